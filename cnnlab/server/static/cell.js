// One cell of a feature map, worked out: click any cell of any map (or of the model's input)
// and a panel shows how its number came about (POST /api/explain/cell, the JSON twin of
// `cnnlab explain cell`): the window one layer down, the kernel, the products, the sums, the
// bias; batchnorm, the activation, a pooling window with the kept value. The window's cells
// are highlighted on the map below; clicking one goes one layer down. Uses app.js's $, el,
// post and lastSource (loaded before this file); app.js calls makeClickable and refreshCell.
"use strict";

const GAP = 1; // pixels between tiles in the server's grids (server/maps.py, evaluate/grids.py)
const views = new Map(); // layer index -> {layer, img|canvas, overlay}; 0 is the model's input
let cellHistory = []; // [{layer, channel, y, x}], the last one shown; back pops it
let cellAnswer = null; // the last answer shown, redrawn when the language changes
let cellAsked = 0; // answers to older requests for the panel are dropped (a switch asks again)

// --- numbers as `cnnlab explain` writes them (worked.fmt: at most 4 significant digits) -----

function fmtNum(v) {
  if (v === null || v === undefined) return "\u00b7";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const [mantissa, power] = v.toExponential(3).split("e"); // Python's "%.4g": 4 significant digits
  const exp = Number(power);
  if (exp < -4 || exp >= 4) {
    const digits = String(Math.abs(exp)).padStart(2, "0");
    return `${mantissa.replace(/\.?0+$/, "")}e${exp < 0 ? "-" : "+"}${digits}`;
  }
  return v.toFixed(3 - exp).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

const cellName = (answer) =>
  answer.shape.length === 1
    ? `${answer.layer.name}[${answer.cell.channel}]`
    : `${answer.layer.name}[${answer.cell.channel}][${answer.cell.y}][${answer.cell.x}]`;

// --- a click on a map -> (channel, y, x) ------------------------------------------------

// The layer's grid image: tiles of H x W, `cols` per row, GAP pixels apart, row-major channels.
function cellAt(layer, img, event) {
  const rect = img.getBoundingClientRect();
  const scale = img.naturalWidth / img.clientWidth;
  const px = Math.floor((event.clientX - rect.left - img.clientLeft) * scale);
  const py = Math.floor((event.clientY - rect.top - img.clientTop) * scale);
  const [, h, w] = layer.shape;
  const col = Math.floor(px / (w + GAP));
  const row = Math.floor(py / (h + GAP));
  const x = px - col * (w + GAP);
  const y = py - row * (h + GAP);
  const channel = row * layer.cols + col;
  if (x < 0 || y < 0 || x >= w || y >= h || col >= layer.cols || channel >= layer.channels_shown) return null;
  return { channel, y, x };
}

// app.js: an image layer's <img> (grid), a vector layer's <canvas>, or the input (layer 0).
function makeClickable(layer, node) {
  const wrap = el("div", { className: "map-wrap" });
  node.replaceWith(wrap);
  // 0x0 until `mark` sizes it over the map: a default 300x150 canvas would show beside the map
  const overlay = el("canvas", { className: "map-mark", width: 0, height: 0 });
  wrap.append(node, overlay);
  views.set(layer.index, { layer, node, overlay });
  node.classList.add("clickable");
  node.addEventListener("click", (event) => {
    const cell = layer.shape.length === 3 ? cellAt(layer, node, event) : vectorCell(layer, node, event);
    if (cell) openCell({ layer: layer.index, ...cell }, true);
  });
  return wrap;
}

function vectorCell(layer, canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const count = layer.values.length;
  const i = Math.floor(((event.clientX - rect.left) / rect.width) * count);
  return i >= 0 && i < count ? { channel: i, y: 0, x: 0 } : null;
}

// The model's input (What the network sees): layer 0, one tile of C x H x W.
function makeInputClickable(img, shape) {
  const layer = { index: 0, name: "input", shape, cols: 1, channels_shown: 1 };
  return makeClickable(layer, img);
}

// --- highlights on the maps --------------------------------------------------------------

function clearMarks() {
  for (const { overlay } of views.values()) overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
}

// Boxes around `cells` ({channel, y, x}) of layer `index`'s grid, in `colour`.
function mark(index, cells, colour) {
  const view = views.get(index);
  if (!view || view.layer.shape.length !== 3) return;
  const { node, overlay, layer } = view;
  overlay.width = node.clientWidth;
  overlay.height = node.clientHeight;
  overlay.style.left = `${node.offsetLeft + node.clientLeft}px`;
  overlay.style.top = `${node.offsetTop + node.clientTop}px`;
  const g = overlay.getContext("2d");
  const scale = node.clientWidth / node.naturalWidth;
  const [, h, w] = layer.shape;
  const boxes = new Map(); // channel -> the window's bounding box in map pixels
  g.fillStyle = colour;
  g.globalAlpha = 0.55;
  for (const c of cells) {
    if (c.channel >= layer.channels_shown) continue;
    const left = (c.channel % layer.cols) * (w + GAP) + c.x;
    const top = Math.floor(c.channel / layer.cols) * (h + GAP) + c.y;
    g.fillRect(left * scale, top * scale, scale, scale);
    const box = boxes.get(c.channel) || { x0: left, y0: top, x1: left, y1: top };
    boxes.set(c.channel, {
      x0: Math.min(box.x0, left), y0: Math.min(box.y0, top), x1: Math.max(box.x1, left), y1: Math.max(box.y1, top),
    });
  }
  g.globalAlpha = 1;
  g.strokeStyle = colour;
  g.lineWidth = 2;
  for (const b of boxes.values()) {
    g.strokeRect(b.x0 * scale - 1, b.y0 * scale - 1, (b.x1 - b.x0 + 1) * scale + 2, (b.y1 - b.y0 + 1) * scale + 2);
  }
}

function showMarks(answer) {
  clearMarks();
  const sources = answer.steps.flatMap((s) => (s.sources || []).flat()).filter((c) => c);
  if (answer.below) mark(answer.below.index, sources, "#e8a317");
  mark(answer.layer.index, [answer.cell], "#2764c4");
}

// --- asking and showing ------------------------------------------------------------------

async function openCell(cell, fresh) {
  if (!lastSource) return;
  cellHistory = fresh ? [cell] : [...cellHistory, cell];
  await showCell();
}

// The current cell for the image on the page (again after each new drawing, and in the new
// language after a switch: refreshCell). Only the latest request's answer is shown.
async function showCell() {
  const cell = cellHistory[cellHistory.length - 1];
  const panel = $("cell-panel");
  const mine = ++cellAsked;
  panel.hidden = false;
  document.body.classList.add("with-cell");
  panel.dataset.busy = "1";
  try {
    const params = { layer: String(cell.layer), channel: String(cell.channel), y: String(cell.y), x: String(cell.x) };
    const answer = await post("/api/explain/cell", lastSource.blob, lastSource.name, params);
    if (mine !== cellAsked) return;
    cellAnswer = answer;
    renderCell(cellAnswer);
  } catch (error) {
    if (mine !== cellAsked) return;
    cellAnswer = null;
    $("cell-body").replaceChildren(el("p", { className: "error", textContent: error.message }));
  } finally {
    if (mine === cellAsked) panel.dataset.busy = "0";
  }
}

function refreshCell() {
  if (cellHistory.length && !$("cell-panel").hidden) showCell();
}

function closeCell() {
  $("cell-panel").hidden = true;
  document.body.classList.remove("with-cell");
  cellHistory = [];
  cellAnswer = null;
  clearMarks();
}

function renderCell(answer) {
  $("cell-title").textContent = `${cellName(answer)} = ${fmtNum(answer.model_value)}`;
  $("cell-back").hidden = cellHistory.length < 2;
  const shape = (s) => s.join("x");
  const parts = [el("p", { className: "cell-spec", textContent: `${answer.layer.index}. ${answer.spec}  (${shape(answer.shape)})` })];
  if (answer.below) {
    const reads = trf("it reads {name} (layer {index}, {shape}), one layer down", {
      name: layerWord(answer.below.name), index: answer.below.index, shape: shape(answer.below.shape),
    });
    parts.push(el("p", { className: "muted", textContent: reads }));
    parts.push(el("p", { className: "muted hint", textContent: tr("Click a cell of the window to go one layer down.") }));
  }
  parts.push(...answer.steps.map((step) => renderStep(answer, step)));
  const verdict = answer.matches ? tr("agrees with torch") : tr("DIFFERS from torch");
  parts.push(el("p", {
    className: answer.matches ? "cell-total" : "cell-total error",
    textContent: trf("total: {total}; torch's output at this cell: {value} ({verdict})", {
      total: fmtNum(answer.total), value: fmtNum(answer.model_value), verdict,
    }),
  }));
  $("cell-body").replaceChildren(...parts);
  showMarks(answer);
}

function renderStep(answer, step) {
  const box = el("div", { className: `cell-step ${step.kind}` }, [el("h4", { textContent: stepHeading(answer, step) })]);
  const tables = stepTables(step);
  if (tables.length) box.append(el("div", { className: "cell-tables" }, tables));
  box.append(el("p", { className: "cell-text", textContent: step.text }));
  return box;
}

// Whole names, as render.py's: a translation names the kind in its own words (최대 풀링).
const POOL_NAMES = { max: N_("max pooling"), min: N_("min pooling"), avg: N_("average pooling") };
const GLOBAL_POOL_HEADINGS = {
  avg: N_("global average pooling: the whole map of channel {n}"),
  max: N_("global max pooling: the whole map of channel {n}"),
};

// A layer's name in a sentence: the model's input (layer 0) in the page's language.
const layerWord = (name) => (name === "input" ? tr("input") : name);

function taps(cells) {
  const first = cells[0], last = cells[cells.length - 1];
  return cells.length > 1 && last - first === cells.length - 1 ? `${first}..${last}` : cells.join(",");
}

function stepHeading(answer, step) {
  const p = step.params || {};
  const below = layerWord(answer.below ? answer.below.name : "input");
  const where = () =>
    trf("channel {n} of {below}: {where}", {
      n: step.channel ?? answer.cell.channel, below,
      where: trf("rows {rows}, columns {cols}", { rows: taps(p.rows), cols: taps(p.cols) }),
    });
  switch (step.kind) {
    case "window": return where();
    case "pool": return `${where()}; ${tr(POOL_NAMES[p.mode])}`;
    case "global_pool": return trf(GLOBAL_POOL_HEADINGS[p.mode], { n: answer.cell.channel });
    case "dot": return trf("the {shown} largest of {count} products input x weight", { shown: step.window.length, count: p.count });
    case "rest": return trf("the other {count} products, added up", { count: p.count });
    case "sum": return answer.layer.kind === "conv" ? tr("sum over channels") : tr("sum of the products");
    case "bias": return tr("plus the bias");
    case "batchnorm": return tr("batchnorm with the running statistics (eval mode): (x - mean)/sqrt(var + eps) x gamma + beta");
    case "activation": return trf("activation {function}", { function: p.function });
    case "softmax": return trf("softmax: exp of this value over the sum of the exps of all {count}", { count: p.count });
    case "input": return tr("the input pixel, normalised as in training");
    case "residual":
      return p.shortcut ? tr("the block's layers' output plus its shortcut's output") : tr("the block's layers' output plus its input");
    case "pass":
      if (p.layer === "dropout") return tr("dropout is off when predicting: the value passes unchanged");
      return trf("flatten: value {i} is cell [{c}][{y}][{x}] of the maps (c x H*W + y x W + x)", {
        i: answer.cell.channel, c: p.index[0], y: p.index[1], x: p.index[2],
      });
    default: return step.kind;
  }
}

// Steps that read one value (relu, batchnorm, ...): no "window" for a single number.
const ONE_VALUE = new Set(["activation", "batchnorm", "pass", "residual"]);

// The step's matrices side by side: the window (cells link one layer down), kernel, products.
function stepTables(step) {
  if (!step.window || step.kind === "input") return [];
  const chosen = step.chosen ? `${step.chosen[0]},${step.chosen[1]}` : null;
  const tables = [];
  if (step.kind === "dot") tables.push(matrixTable(tr("index"), step.params.indices.map((i) => [i])));
  const big = step.window.length * step.window[0].length > 100; // a large global pool: no table
  const caption = step.kind === "dot" ? tr("input") : ONE_VALUE.has(step.kind) ? tr("the value one layer down") : tr("window");
  if (!big) tables.push(matrixTable(caption, step.window, step, chosen));
  if (step.weights) tables.push(matrixTable(step.kind === "dot" ? tr("weight") : tr("kernel"), step.weights));
  if (step.products) tables.push(matrixTable(step.kind === "softmax" ? tr("exp(z - max)") : tr("products"), step.products));
  return tables;
}

function matrixTable(caption, matrix, step = null, chosen = null) {
  const rows = matrix.map((row, i) =>
    el("tr", {}, row.map((v, j) => {
      const td = el("td", { textContent: fmtNum(v) });
      const source = step && step.sources ? step.sources[i][j] : null;
      if (step && step.padding && step.padding[i][j]) td.classList.add("pad");
      if (chosen === `${i},${j}`) td.classList.add("chosen");
      if (source) {
        td.classList.add("link");
        td.title = `${source.channel}, ${source.y}, ${source.x}`;
        td.addEventListener("click", () => openCell(source, false));
      }
      return td;
    })),
  );
  return el("figure", { className: "mx" }, [el("figcaption", { textContent: caption }), el("table", {}, [el("tbody", {}, rows)])]);
}

$("cell-close").addEventListener("click", closeCell);
$("cell-back").addEventListener("click", () => {
  cellHistory.pop();
  showCell();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("cell-panel").hidden) closeCell();
});
document.addEventListener("cnnlab:language", () => {
  if (cellAnswer) renderCell(cellAnswer);
});
