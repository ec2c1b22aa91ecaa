// cnnlab's page: draw (pointer events) or drop an image; the server predicts and returns every
// layer's output. The canvas is sent as a PNG and resized on the server, the same way as an
// uploaded file, so the page and `cnnlab predict` see identical model inputs.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const DEBOUNCE_MS = 120;
const TOP_K = 5;

let model = null;
let background = "#000";
let ink = "#fff";
let drawing = false;
let last = null;
let timer = null;
let lastSource = null; // {blob, name}: what was analysed last, re-sent when an option changes
let upload = null; // {name, size} of the file on the canvas; null while the canvas is a drawing
let sequence = 0; // answers to older requests are dropped
let statusText = ""; // the status line: a string, or a function giving it in the page's language
let lastCam = null; // the Grad-CAM answer shown, its note written again when the language changes
let lastMaps = null; // the feature maps shown, their headings written again likewise

// --- model ---------------------------------------------------------------------------------

async function loadModel() {
  const response = await apiFetch("/api/model");
  model = await response.json();
  $("run-name").textContent = model.run;
  const [c, h, w] = model.input_shape;
  showModelText();
  background = model.drawing.background === "black" ? "#000" : "#fff";
  ink = model.drawing.ink === "white" ? "#fff" : "#000";
  if (c === 3) {
    $("ink-label").hidden = false;
    $("ink").value = ink === "#fff" ? "#ffffff" : "#000000";
  }
  // centring and inversion are MNIST's steps for gray digits: the server refuses centring in colour
  $("gray-controls").hidden = c !== 1;
  $("brush").value = String(Math.round(canvas.width / Math.max(h, w) * 2.5));
  clearCanvas();
}

// The model's lines and table in the page's language (i18n.js), again when it is switched.
function showModelText() {
  const [c, h, w] = model.input_shape;
  const accuracy = model.metrics.test_accuracy;
  $("model-line").textContent =
    `${model.spec}  |  ${tr("input")} ${c}x${h}x${w}, ${model.classes.length} ${tr("classes")}` +
    (accuracy != null ? `, ${tr("test accuracy")} ${(100 * accuracy).toFixed(2)}%` : "") +
    `  |  ${tr("engine")}: ${model.engine}`;
  showResizeNote();
  renderSummary(model.summary);
}

// What the server resizes: the uploaded file at its own size, or the drawing at the canvas's.
function showResizeNote() {
  const [, h, w] = model.input_shape;
  $("resize-note").textContent = upload
    ? trf("The uploaded file {name} ({size}) is resized to {input} on the server.", {
        name: upload.name,
        size: upload.size,
        input: `${h}x${w}`,
      })
    : trf("Your drawing ({drawing}) is resized to {input} on the server.", {
        drawing: `${canvas.width}x${canvas.height}`,
        input: `${h}x${w}`,
      });
}

function setUpload(value) {
  upload = value;
  if (model) showResizeNote();
}

document.addEventListener("cnnlab:language", () => {
  if (model) showModelText();
  if (typeof statusText === "function") $("status").textContent = statusText();
  if (lastCam) renderCam(lastCam);
  if (lastMaps) {
    for (const layer of lastMaps.layers) {
      const shape = document.querySelector(`#maps .layer[data-index="${layer.index}"] .shape`);
      if (shape) shape.textContent = shapeText(layer);
    }
  }
  askAgainInLanguage();
});

// What the server wrote (the summary's notes, its messages, the Grad-CAM layer's words) is in
// the language it was asked in: after a switch, ask again in the new one and redraw.
async function askAgainInLanguage() {
  if (!model) return;
  try {
    const response = await apiFetch("/api/model");
    if (response.ok) model = await response.json();
    showModelText();
  } catch (error) {
    // the words already shown stay: the server is gone, the next drawing says so
  }
  if (lastSource) analyse(lastSource.blob, lastSource.name);
}

// --- drawing -------------------------------------------------------------------------------

function clearCanvas() {
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  lastSource = null;
  setUpload(null);
  sequence += 1;
  clearTimeout(timer);
  timer = null;
  setBusy(false);
  $("prediction").textContent = "\u2014";
  $("bars").replaceChildren();
  $("maps").replaceChildren();
  $("seen").replaceChildren();
  $("cam").replaceChildren();
  $("cam-view").hidden = true;
  $("cam-note").textContent = "";
  lastCam = null;
  lastMaps = null;
  setStatus("");
  closeCell(); // cell.js: the panel explained a cell of the image just wiped
}

function point(event) {
  const rect = canvas.getBoundingClientRect();
  return {
    x: (event.clientX - rect.left) * (canvas.width / rect.width),
    y: (event.clientY - rect.top) * (canvas.height / rect.height),
  };
}

function stroke(from, to) {
  ctx.strokeStyle = model && model.input_shape[0] === 3 ? $("ink").value : ink;
  ctx.fillStyle = ctx.strokeStyle;
  ctx.lineWidth = Number($("brush").value);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

canvas.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  setUpload(null); // strokes on an uploaded picture: the canvas is sent from now on
  last = point(event);
  stroke(last, last);
  schedule();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const p = point(event);
  stroke(last, p);
  last = p;
  schedule();
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    schedule();
  });
}
$("clear").addEventListener("click", clearCanvas);
for (const id of ["center", "invert"]) {
  $(id).addEventListener("change", () => lastSource && analyse(lastSource.blob, lastSource.name));
}

function schedule() {
  clearTimeout(timer);
  setBusy(true);
  timer = setTimeout(() => {
    timer = null;
    canvas.toBlob((blob) => analyse(blob, "drawing.png"), "image/png");
  }, DEBOUNCE_MS);
}

// data-busy="0" once the latest drawing or file has its prediction and maps on the page
function setBusy(busy) {
  document.body.dataset.busy = busy ? "1" : "0";
}

// --- uploads -------------------------------------------------------------------------------

function useFile(file) {
  if (!file) return;
  const url = URL.createObjectURL(file);
  const picture = new Image();
  picture.onload = () => {
    // Shown on the canvas for reference; the file itself is what the server gets.
    ctx.fillStyle = background;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const scale = Math.min(canvas.width / picture.width, canvas.height / picture.height);
    const w = picture.width * scale;
    const h = picture.height * scale;
    ctx.drawImage(picture, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
    setUpload({ name: file.name, size: `${picture.naturalWidth}x${picture.naturalHeight}` });
  };
  picture.onerror = () => {
    URL.revokeObjectURL(url);
    setUpload({ name: file.name, size: tr("size unknown") }); // the server may still read it
  };
  picture.src = url;
  analyse(file, file.name);
}

$("file-input").addEventListener("change", (event) => {
  useFile(event.target.files[0]);
  event.target.value = ""; // choosing the same file again fires "change" again
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  useFile(event.dataTransfer.files[0]);
});

// --- asking the server ---------------------------------------------------------------------

async function post(path, blob, name, params) {
  const form = new FormData();
  form.append("file", blob, name);
  const query = new URLSearchParams({
    invert: $("invert").value,
    center: $("center").checked ? "true" : "false",
    ...params,
  });
  const response = await apiFetch(`${path}?${query}`, { method: "POST", body: form });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

async function analyse(blob, name) {
  if (!blob || !model) return;
  lastSource = { blob, name };
  const mine = ++sequence;
  setBusy(true);
  try {
    const prediction = await post("/api/predict", blob, name, { top_k: String(TOP_K) });
    if (mine !== sequence) return;
    renderPrediction(prediction);
    const ms = prediction.milliseconds.toFixed(1);
    setStatus(() => trf("{engine}: {ms} ms on the server", { engine: prediction.engine, ms }));
    const maps = await post("/api/featuremaps", blob, name, {});
    if (mine !== sequence) return;
    renderMaps(maps);
    const cam = await post("/api/cam", blob, name, {}).catch((error) => ({ error: error.message }));
    if (mine !== sequence) return;
    renderCam(cam);
  } catch (error) {
    if (mine === sequence) setStatus(error.message, true);
  } finally {
    if (mine === sequence && timer === null) setBusy(false);
  }
}

// `text`: a string, or a function that writes it in the page's language (again on a switch).
function setStatus(text, isError = false) {
  statusText = text;
  $("status").textContent = typeof text === "function" ? text() : text;
  $("status").classList.toggle("error", isError);
}

// --- rendering -----------------------------------------------------------------------------

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)}%`;

function renderPrediction(data) {
  $("prediction").replaceChildren(data.prediction, " ", el("small", { textContent: percent(data.probability) }));
  $("bars").replaceChildren(
    ...data.top_k.map((item, i) =>
      el("div", { className: i === 0 ? "bar top" : "bar" }, [
        el("span", { className: "label", textContent: item.class }),
        el("div", { className: "track" }, [
          el("div", { className: "fill", style: `width: ${(100 * item.probability).toFixed(2)}%` }),
        ]),
        el("span", { className: "pct", textContent: percent(item.probability) }),
      ]),
    ),
  );
}

function renderMaps(data) {
  lastMaps = data;
  views.clear(); // cell.js: the maps about to be drawn replace the clickable ones
  const seen = el("img", { src: data.input.png, alt: `model input ${data.input.shape.join("x")}` });
  $("seen").replaceChildren(makeInputClickable(seen, data.input.shape));
  // The last fc layer (and a softmax after it) has one value per class: its bars get the names.
  const lastFc = Math.max(-1, ...data.layers.filter((l) => l.kind === "fc").map((l) => l.index));
  const perClass = (layer) =>
    lastFc >= 0 && layer.index >= lastFc && layer.values && layer.values.length === model.classes.length;
  $("maps").replaceChildren(...data.layers.map((layer) => renderLayer(layer, perClass(layer) ? model.classes : null)));
  refreshCell(); // cell.js: an open panel follows the new drawing
}

function renderCam(data) {
  // Grad-CAM for the predicted class over the model's input; models without a conv layer have none.
  lastCam = data;
  if (data.error) {
    $("cam-view").hidden = true;
    $("cam-note").textContent = trf("no class activation map: {error}", { error: data.error });
    return;
  }
  $("cam").replaceChildren(el("img", { src: data.overlay, alt: `Grad-CAM for ${data.class}` }));
  $("cam-view").hidden = false;
  $("cam-note").textContent =
    trf('Grad-CAM for "{name}" at {layer}: blue no evidence, red the most.', { name: data.class, layer: data.layer_text }) +
    (data.warnings.length ? ` ${data.warnings.join(" ")}` : "");
}

// "  32x14x14 (first 16 channels)": a layer's output shape, and how many of its channels are drawn.
function shapeText(layer) {
  const shown =
    layer.png && layer.channels_shown < layer.shape[0] ? ` ${trf("(first {n} channels)", { n: layer.channels_shown })}` : "";
  return `  ${layer.shape.join("x")}${shown}`;
}

function renderLayer(layer, labels) {
  const title = el("h3", {}, [
    `${layer.index}. ${layer.name} `,
    el("span", { className: "text", textContent: layer.layer }),
    el("span", { className: "shape", textContent: shapeText(layer) }),
  ]);
  const figure = el("div", { className: "layer" }, [title]);
  if (layer.png) {
    const img = el("img", { src: layer.png, alt: `${layer.name} feature maps` });
    img.onload = () => {
      // Enlarge small maps with whole-pixel steps, up to about 360 px wide.
      const zoom = Math.max(1, Math.min(8, Math.floor(360 / img.naturalWidth)));
      img.style.width = `${img.naturalWidth * zoom}px`;
      if (cellAnswer) showMarks(cellAnswer); // cell.js: the highlights at the map's new size
    };
    figure.append(makeClickable(layer, img));
  } else {
    figure.classList.add("vector");
    const strip = labels ? classBars(layer.values, layer.min, layer.max, labels) : vectorStrip(layer.values, layer.min, layer.max);
    figure.append(makeClickable(layer, strip));
  }
  figure.dataset.index = String(layer.index);
  return figure;
}

function vectorStrip(values, low, high) {
  // One column per value, height by value (zero line marked): flatten and fc outputs.
  const width = Math.min(1100, Math.max(200, values.length * (values.length <= 64 ? 12 : 1)));
  const strip = el("canvas", { width, height: 60 });
  const g = strip.getContext("2d");
  const lo = Math.min(low, 0);
  const hi = Math.max(high, 0);
  const span = hi - lo || 1;
  const zero = 60 - ((0 - lo) / span) * 60;
  const step = width / values.length;
  g.fillStyle = "#2764c4";
  values.forEach((v, i) => {
    const y = 60 - ((v - lo) / span) * 60;
    g.fillRect(i * step, Math.min(y, zero), Math.max(step - (step > 3 ? 1 : 0), 1), Math.abs(zero - y) || 1);
  });
  g.fillStyle = "#999";
  g.fillRect(0, zero, width, 1);
  return strip;
}

function classBars(values, low, high, labels) {
  // One labelled column per class (the last fc's logits, or their softmax), zero line marked.
  const slot = Math.max(36, Math.min(80, Math.floor(1100 / values.length)));
  const width = slot * values.length, chart = 70, height = chart + 34;
  const bars = el("canvas", { width, height, className: "class-bars" });
  bars.setAttribute("aria-label", labels.map((name, i) => `${name}: ${values[i].toFixed(3)}`).join(", "));
  const g = bars.getContext("2d");
  const lo = Math.min(low, 0), hi = Math.max(high, 0), span = hi - lo || 1;
  const zero = chart - ((0 - lo) / span) * chart;
  const top = values.indexOf(Math.max(...values));
  values.forEach((v, i) => {
    const y = chart - ((v - lo) / span) * chart;
    g.fillStyle = i === top ? "#2764c4" : "#8fb3ec";
    g.fillRect(i * slot + 4, Math.min(y, zero), slot - 8, Math.abs(zero - y) || 1);
    g.fillStyle = "#1d232a";
    g.font = "11px system-ui, sans-serif";
    g.textAlign = "center";
    const name = labels[i].length > 9 ? `${labels[i].slice(0, 8)}\u2026` : labels[i];
    g.fillText(name, i * slot + slot / 2, chart + 14, slot - 2);
    g.fillStyle = "#5d6875";
    g.fillText(v.toFixed(2), i * slot + slot / 2, chart + 28, slot - 2);
  });
  g.fillStyle = "#999";
  g.fillRect(0, zero, width, 1);
  return bars;
}

function renderSummary(summary) {
  const head = el("thead", {}, [
    el("tr", {}, ["#", tr("layer"), tr("output"), tr("how the size comes about"), tr("params"), "FLOPs", "RF"].map((t, i) =>
      el("th", { textContent: t, className: i >= 4 && i <= 5 ? "num" : "" }),
    )),
  ]);
  const rows = summary.layers.map((r) =>
    el("tr", {}, [
      el("td", { textContent: String(r.index) }),
      el("td", { textContent: `${r.name}  ${r.layer}` }),
      el("td", { textContent: r.out_shape.join("x") }),
      el("td", { className: "how", textContent: [...r.notes, ...r.formulas].join("\n") }),
      el("td", { className: "num", textContent: r.params.toLocaleString("en") }),
      el("td", { className: "num", textContent: r.flops.toLocaleString("en") }),
      el("td", {
        textContent: r.receptive_field ? `${r.receptive_field[0]}/${r.jump[0]}` : tr("all"),
      }),
    ]),
  );
  const foot = el("tfoot", {}, [
    el("tr", {}, [
      el("td"),
      el("td", { textContent: tr("total") }),
      el("td", { textContent: summary.output_shape.join("x") }),
      el("td"),
      el("td", { className: "num", textContent: summary.total_params.toLocaleString("en") }),
      el("td", { className: "num", textContent: summary.total_flops.toLocaleString("en") }),
      el("td"),
    ]),
  ]);
  $("summary").replaceChildren(
    el("caption", { className: "muted", textContent: summary.spec }),
    head,
    el("tbody", {}, rows),
    foot,
  );
}

loadModel().catch((error) => setStatus(() => trf("cannot load the model: {error}", { error: error.message }), true));
