// cnnlab's run report: each panel asks its JSON twin under /api/run/ and draws it with plain
// DOM, inline SVG and canvas (no library, nothing from outside the server). A panel's section
// gets data-state="ready" once drawn, or "error" with the server's message.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const ATTEMPTS = 10; // the first evaluation may outlast the server's time limit (504): ask again
const BLUE = [33, 102, 172];
const RED = [178, 24, 43];

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children);
  return node;
}

const percent = (p, digits = 2) => (p == null ? "\u2014" : `${(100 * p).toFixed(digits)}%`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function getJson(url) {
  for (let attempt = 1; ; attempt += 1) {
    const response = await apiFetch(url);
    if ((response.status === 503 || response.status === 504) && attempt < ATTEMPTS) {
      await sleep(1000);
      continue;
    }
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }
}

async function panel(id, render) {
  const section = $(id);
  try {
    render(await getJson(section.dataset.api));
    section.dataset.state = "ready";
  } catch (error) {
    section.append(el("p", { className: "error", textContent: error.message }));
    section.dataset.state = "error";
  }
}

// --- header --------------------------------------------------------------------------------

async function loadHeader() {
  const model = await getJson("/api/model");
  $("run-name").textContent = model.run;
  const [c, h, w] = model.input_shape;
  $("model-line").textContent =
    `${model.spec}  |  ${tr("input")} ${c}x${h}x${w}, ${model.classes.length} ${tr("classes")}` +
    (model.data ? `  |  ${tr("data")}: ${model.data}` : "");
}

// --- training curves -----------------------------------------------------------------------

const CHARTS = [
  { title: N_("loss"), series: [["train_loss", N_("train")], ["val_loss", N_("validation")]] },
  { title: N_("accuracy"), series: [["train_accuracy", N_("train")], ["val_accuracy", N_("validation")]], percent: true },
  { title: N_("learning rate"), series: [["lr", N_("lr")]] },
];
const COLOURS = ["#2764c4", "#e07b00", "#3a9a48"];

function renderCurves(data) {
  const epochs = data.columns.epoch || [];
  const charts = CHARTS.map((chart) => {
    const series = chart.series
      .filter(([column]) => (data.columns[column] || []).some((v) => v != null))
      .map(([column, label], i) => ({ label: tr(label), values: data.columns[column], colour: COLOURS[i] }));
    const line = chart.percent && data.test_accuracy != null ? data.test_accuracy : null;
    return lineChart(tr(chart.title), epochs, series, chart.percent, line);
  });
  $("curves").replaceChildren(...charts);
}

function lineChart(title, epochs, series, asPercent, testLine) {
  const W = 340, H = 210, L = 52, R = 10, T = 26, B = 34;
  const values = series.flatMap((s) => s.values.filter((v) => v != null));
  if (testLine != null) values.push(testLine);
  const figure = el("figure", { className: "chart" });
  if (!values.length) return figure;
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi === lo) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.1, hi + (Math.abs(hi) || 1) * 0.1];
  const first = epochs[0], last = epochs[epochs.length - 1];
  const x = (e) => (last === first ? (L + W - R) / 2 : L + ((e - first) / (last - first)) * (W - L - R));
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const label = (v) => (asPercent ? percent(v, 1) : Math.abs(v) < 0.01 ? v.toExponential(1) : v.toPrecision(3));
  const parts = [svg("text", { x: L, y: 16, class: "title" }, [title])];
  for (const v of [lo, (lo + hi) / 2, hi]) {
    parts.push(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    parts.push(svg("text", { x: L - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" }, [label(v)]));
  }
  for (const e of [...new Set([first, last])]) {
    parts.push(svg("text", { x: x(e), y: H - B + 16, class: "tick", "text-anchor": "middle" }, [String(e)]));
  }
  parts.push(svg("text", { x: (L + W - R) / 2, y: H - 4, class: "tick", "text-anchor": "middle" }, [tr("epoch")]));
  if (testLine != null) {
    parts.push(svg("line", { x1: L, x2: W - R, y1: y(testLine), y2: y(testLine), class: "test" }));
    parts.push(svg("text", { x: W - R, y: y(testLine) - 4, class: "tick", "text-anchor": "end" }, [trf("test {value}", { value: percent(testLine) })]));
  }
  series.forEach((s, i) => parts.push(...seriesMarks(s, epochs, x, y, label), legend(s, i, W - R)));
  figure.append(svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": title }, parts));
  return figure;
}

function seriesMarks(s, epochs, x, y, label) {
  const points = epochs.map((e, i) => [e, s.values[i]]).filter(([, v]) => v != null);
  const path = points.map(([e, v], i) => `${i ? "L" : "M"}${x(e).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const marks = [svg("path", { d: path, fill: "none", stroke: s.colour, "stroke-width": 2 })];
  for (const [e, v] of points) {
    const dot = svg("circle", { cx: x(e), cy: y(v), r: 3, fill: s.colour });
    dot.append(svg("title", {}, [trf("{series}, epoch {epoch}: {value}", { series: s.label, epoch: e, value: label(v) })]));
    marks.push(dot);
  }
  return marks;
}

function legend(s, i, right) {
  return svg("text", { x: right - i * 80, y: 16, class: "legend", fill: s.colour, "text-anchor": "end" }, [s.label]);
}

// --- confusion matrix and its cells --------------------------------------------------------

let confusion = null;
let cellSequence = 0; // answers for an older click are dropped

function renderConfusion(data) {
  confusion = data;
  $("confusion-line").textContent =
    trf("{count} {split} images of {data}: accuracy {accuracy}", {
      count: data.images.toLocaleString("en"),
      split: data.split === "test" ? tr("test") : data.split,
      data: data.data,
      accuracy: percent(data.accuracy),
    });
  const head = el("tr", {}, [
    el("th", { className: "corner", textContent: tr("true \u2193  predicted \u2192") }),
    ...data.classes.map((name) => el("th", { className: "col", title: name }, [el("span", { textContent: name })])),
  ]);
  const rows = data.matrix.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, [
      el("th", { textContent: data.classes[t], title: data.classes[t] }),
      ...row.map((count, p) => confusionCell(count, count / total, t, p)),
    ]);
  });
  $("confusion").replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
}

function confusionCell(count, share, t, p) {
  const [r, g, b] = t === p ? BLUE : RED;
  const cell = el("td", {
    className: "cell num" + (count ? " some" : ""),
    textContent: String(count),
    title: trf("true {true}, predicted {predicted}: {count} ({share} of the row)", {
      true: confusion.classes[t], predicted: confusion.classes[p], count, share: percent(share, 1),
    }),
    tabIndex: count ? 0 : -1,
  });
  cell.dataset.true = String(t);
  cell.dataset.pred = String(p);
  cell.dataset.count = String(count);
  cell.style.background = `rgba(${r}, ${g}, ${b}, ${(0.85 * share).toFixed(3)})`;
  if (share > 0.5) cell.style.color = "#fff";
  if (count) {
    cell.addEventListener("click", () => showCell(cell));
    cell.addEventListener("keydown", (event) => (event.key === "Enter" || event.key === " ") && showCell(cell));
  }
  return cell;
}

async function showCell(cell) {
  const mine = ++cellSequence;
  for (const other of document.querySelectorAll("#confusion td.selected")) other.classList.remove("selected");
  cell.classList.add("selected");
  const t = Number(cell.dataset.true), p = Number(cell.dataset.pred);
  const section = $("cell-panel");
  section.hidden = false;
  section.dataset.state = "loading";
  $("cell-title").textContent =
    t === p
      ? trf("{name}, predicted right", { name: confusion.classes[t] })
      : trf("{true} taken for {predicted}", { true: confusion.classes[t], predicted: confusion.classes[p] });
  $("cell-line").textContent = tr("loading\u2026");
  $("cell-images").replaceChildren();
  try {
    const data = await getJson(`/api/run/confusion/${t}/${p}`);
    if (mine !== cellSequence) return;
    renderCell(data);
    section.dataset.state = "ready";
  } catch (error) {
    if (mine !== cellSequence) return;
    $("cell-line").textContent = error.message;
    section.dataset.state = "error";
  }
  section.scrollIntoView({ block: "nearest" });
}

function renderCell(data) {
  const shown = data.images.length;
  const cam = confusion.cam;
  const count =
    shown < data.count
      ? trf("the first {shown} of {count} images", { shown, count: data.count })
      : data.count === 1 ? tr("1 image") : trf("{count} images", { count: data.count });
  const under =
    data.true !== data.predicted
      ? trf('under each: the probabilities of "{predicted}" and of "{true}"', { predicted: data.predicted, true: data.true })
      : trf('under each: the probability of "{predicted}"', { predicted: data.predicted });
  const over = cam
    ? trf('over each: its Grad-CAM for "{predicted}" at {layer} ({size} map; blue none, red the most evidence; point at it for the image alone)', {
        predicted: data.predicted, layer: cam.layer.name, size: cam.layer.map_size.join("x"),
      })
    : null;
  $("cell-line").textContent = [`${count}, ${data.order}`, under, over].filter((part) => part).join("; ");
  $("cell-images").replaceChildren(...data.images.map((image) => cellImage(image, data)));
}

function cellImage(image, data) {
  const name = image.file ? image.file.split(/[\\/]/).pop() : trf("test #{index}", { index: image.index });
  const img = el("img", { src: image.png, alt: name, title: image.file || trf("test image {index}", { index: image.index }) });
  const odds = data.true === data.predicted ? percent(image.probability, 1) : `${percent(image.probability, 1)} / ${percent(image.true_probability, 1)}`;
  // The Grad-CAM lies over its image (both 84 px, one place); pointing at it fades it out.
  const cam = image.cam && el("img", { src: image.cam, className: "cam", alt: `Grad-CAM of ${name}`, title: trf('where the model saw "{name}" (Grad-CAM)', { name: data.predicted }) });
  const figure = el("figure", { className: "thumb" }, [el("span", { className: "stack" }, cam ? [img, cam] : [img])]);
  figure.dataset.index = String(image.index);
  figure.append(el("figcaption", {}, [el("span", { className: "name", textContent: name }), el("span", { textContent: odds })]));
  return figure;
}

// --- scores --------------------------------------------------------------------------------

function renderScores(data) {
  const base = data.majority_baseline;
  $("scores-line").textContent = trf(
    'accuracy {accuracy} \u00b7 balanced accuracy {balanced} \u00b7 majority baseline {baseline} (always "{name}") \u00b7 loss {loss}',
    {
      accuracy: percent(data.accuracy), balanced: percent(data.balanced_accuracy), baseline: percent(base.accuracy),
      name: base.class, loss: data.loss == null ? "\u2014" : data.loss.toFixed(4),
    },
  );
  const titles = [tr("class"), tr("precision"), tr("recall"), "F1", tr("support")];
  const head = el("tr", {}, titles.map((t, i) => el("th", { textContent: t, className: i ? "num" : "" })));
  const rows = data.per_class.map((r) =>
    el("tr", {}, [
      el("td", { textContent: r.class }),
      ...[r.precision, r.recall].map((v) => el("td", { className: "num", textContent: percent(v, 1) })),
      el("td", { className: "num f1" }, [
        // the bar in a track of its own left of the number, so the two never cover each other
        el("span", { className: "track" }, [el("span", { className: "fill", style: `width: ${(100 * r.f1).toFixed(1)}%` })]),
        el("span", { className: "value", textContent: percent(r.f1, 1) }),
      ]),
      el("td", { className: "num", textContent: r.support.toLocaleString("en") }),
    ]),
  );
  $("scores").replaceChildren(el("thead", {}, [head]), el("tbody", {}, rows));
}

// --- filters -------------------------------------------------------------------------------

function diverging(v) {
  // v in -1..1: blue (negative) through white (0) to red (positive)
  const [r, g, b] = v < 0 ? BLUE : RED;
  const a = Math.min(1, Math.abs(v));
  return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a];
}

function renderFilters(data) {
  const [, inputs, kh, kw] = data.weight_shape;
  const count = data.filters_shown;
  const tilesPerFilter = data.rgb ? 1 : inputs;
  const columns = tilesPerFilter === 1 ? Math.min(count, 16) : tilesPerFilter;
  const tiles = count * tilesPerFilter;
  const zoom = Math.max(2, Math.floor(40 / Math.max(kh, kw)));
  const step = kw * zoom + 2, rows = Math.ceil(tiles / columns);
  const canvas = el("canvas", { width: columns * step - 2, height: rows * (kh * zoom + 2) - 2, className: "filters" });
  const g = canvas.getContext("2d");
  g.fillStyle = "#c8ced6"; // the gaps between tiles, apart from white (a weight of 0)
  g.fillRect(0, 0, canvas.width, canvas.height);
  const top = data.max_abs || 1;
  data.weights.forEach((flat, o) => {
    for (let t = 0; t < tilesPerFilter; t += 1) {
      const index = o * tilesPerFilter + t;
      const left = (index % columns) * step, upper = Math.floor(index / columns) * (kh * zoom + 2);
      for (let i = 0; i < kh; i += 1) {
        for (let j = 0; j < kw; j += 1) {
          const colour = data.rgb
            ? [0, 1, 2].map((c) => 128 + (127 * flat[c * kh * kw + i * kw + j]) / top)
            : diverging(flat[t * kh * kw + i * kw + j] / top);
          g.fillStyle = `rgb(${colour.map(Math.round).join(",")})`;
          g.fillRect(left + j * zoom, upper + i * zoom, zoom, zoom);
        }
      }
    }
  });
  const what = data.rgb
    ? tr("one RGB tile per filter")
    : inputs > 1 ? trf("rows: filters, columns: {count} input channels", { count: inputs }) : tr("one tile per filter");
  $("filters-line").textContent =
    trf("{layer}: {spec}, weights {shape}; {what}", { layer: data.layer, spec: data.spec, shape: data.weight_shape.join("x"), what }) +
    (count < data.weight_shape[0] ? ` ${trf("(the first {count})", { count })}` : "") +
    `; ${trf("scale \u00b1{scale}", { scale: top.toPrecision(3) })}`;
  $("filters").replaceChildren(canvas);
}

// --- top patches ---------------------------------------------------------------------------

function renderPatches(data) {
  const select = $("patches-layer");
  if (!select.options.length) {
    select.append(...data.layers.map((name) => el("option", { value: name, textContent: name })));
    select.addEventListener("change", () => loadPatches(select.value));
  }
  select.value = data.layer;
  const [rh, rw] = data.receptive_field;
  $("patches-line").textContent = trf(
    "{layer}: {spec}, {shape}; each cell sees {field} px, cells {jump} px apart; {count} images searched",
    {
      layer: data.layer, spec: data.spec, shape: data.shape.join("x"), field: `${rh}x${rw}`,
      jump: data.jump.join("x"), count: data.images.toLocaleString("en"),
    },
  );
  const zoom = Math.max(1, Math.floor(48 / Math.max(rh, rw)));
  const rows = data.channels.map((row) =>
    el("div", { className: "patch-row" }, [
      el("span", { className: "channel", textContent: `${tr("channel")} ${row.channel}` }),
      ...row.top.map((p) =>
        el("img", {
          src: p.png,
          className: "patch",
          alt: `channel ${row.channel}: ${p.label}`,
          title: trf("{file} ({label}): activation {value} at {position}", {
            file: p.file || trf("test #{index}", { index: p.index }), label: p.label,
            value: p.activation.toPrecision(3), position: p.position.join(","),
          }),
          style: `width: ${rw * zoom}px; height: ${rh * zoom}px`,
        }),
      ),
    ]),
  );
  $("patches").replaceChildren(...rows);
}

async function loadPatches(layer) {
  const section = $("patches-panel");
  section.dataset.state = "loading";
  try {
    renderPatches(await getJson(`/api/run/patches?layer=${encodeURIComponent(layer)}`));
    section.dataset.state = "ready";
  } catch (error) {
    $("patches-line").textContent = error.message;
    section.dataset.state = "error";
  }
}

// --- projector -----------------------------------------------------------------------------

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const classColour = (i) => (i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360}, 60%, 45%)`);

function renderEmbedding(data) {
  const W = 640, H = 440, M = 12;
  const xs = data.points.map((p) => p.x), ys = data.points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (v) => M + ((v - x0) / (x1 - x0 || 1)) * (W - 2 * M);
  const sy = (v) => H - M - ((v - y0) / (y1 - y0 || 1)) * (H - 2 * M);
  const index = Object.fromEntries(data.classes.map((name, i) => [name, i]));
  const dots = data.points.map((p, k) => {
    const colour = classColour(index[p.label]);
    const dot = svg("circle", {
      cx: sx(p.x).toFixed(1), cy: sy(p.y).toFixed(1), r: p.correct ? 3 : 4.5,
      fill: p.correct ? colour : "#fff", stroke: colour, "stroke-width": p.correct ? 0 : 2,
      class: p.correct ? "point" : "point wrong",
    });
    dot.dataset.k = String(k);
    return dot;
  });
  const plot = $("projector");
  plot.setAttribute("viewBox", `0 0 ${W} ${H}`);
  plot.replaceChildren(...dots);
  plot.onmousemove = (event) => hoverPoint(event, data);
  plot.onmouseleave = () => ($("hover").hidden = true);
  $("embedding-line").textContent =
    trf("{shown} of {total} {data} images, {wrong} misclassified; {features} features (input of {layer}); axes: {axes}", {
      shown: data.shown.toLocaleString("en"), total: data.total.toLocaleString("en"), data: data.data,
      wrong: data.misclassified, features: data.features, layer: data.layer, axes: data.axes.join(", "),
    }) + (data.notes.length ? `; ${data.notes.join("; ")}` : "");
  $("embedding-legend").replaceChildren(
    ...data.classes.map((name, i) => el("span", {}, [el("i", { style: `background: ${classColour(i)}` }), name])),
  );
}

function hoverPoint(event, data) {
  const k = event.target.dataset && event.target.dataset.k;
  const box = $("hover");
  if (k === undefined) return;
  const p = data.points[Number(k)];
  $("hover-image").src = `/api/run/image/${p.index}`;
  const name = p.file ? p.file.split(/[\\/]/).pop() : trf("test #{index}", { index: p.index });
  $("hover-text").textContent = p.correct
    ? `${name}: ${p.label}`
    : trf("{name}: {label}, taken for {predicted}", { name, label: p.label, predicted: p.predicted });
  const area = $("projector").getBoundingClientRect();
  box.style.left = `${event.clientX - area.left + 14}px`;
  box.style.top = `${event.clientY - area.top + 14}px`;
  box.dataset.index = String(p.index);
  box.hidden = false;
}

// --- start ---------------------------------------------------------------------------------

loadHeader().catch((error) => ($("model-line").textContent = trf("cannot load the run: {error}", { error: error.message })));
panel("curves-panel", renderCurves);
panel("filters-panel", renderFilters);
// The test split is evaluated once, on the first request that needs it: ask for the confusion
// matrix first, then the panels built on that evaluation, so that they do not each hold one of
// the server's worker threads while waiting for it.
panel("confusion-panel", renderConfusion).then(() => {
  panel("scores-panel", renderScores);
  panel("patches-panel", renderPatches);
  panel("embedding-panel", renderEmbedding);
});

// The panels are drawn from the server's answers once: a new language (i18n.js's switch,
// already remembered) draws them again.
document.addEventListener("cnnlab:language", () => window.location.reload());
