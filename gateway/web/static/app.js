"use strict";
// The page: two views (read a digit, how it is doing), everything through the JSON API.
const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const pct = (p) => `${(p * 100).toFixed(1)}%`;
const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

// What the API's error codes mean to someone using the page.
const PLAIN_ERRORS = {
  payload_too_large: (m) => `That file is too big: ${m}. Try a smaller photo or a screenshot.`,
  image_too_large: () => "That picture has too many pixels to read. Try a smaller photo.",
  empty_file: () => "That file is empty. Choose a picture of a digit.",
  corrupt_image: () => "That file could not be read as a picture. Is it a complete image file?",
  unsupported_image: () => "That kind of file is not supported. Use PNG, JPEG, GIF, BMP or WebP.",
  no_digit_found: () => "No digit found in the picture. Write one digit, large and dark.",
  model_unavailable: () => "The model is not available right now. Try again in a few seconds.",
  store_unavailable: () => "Results cannot be saved right now. Try again in a few seconds.",
};

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function callApi(path, options) {
  let response;
  try {
    response = await fetch(API + path, options);
  } catch {
    throw new ApiError("network", "The service cannot be reached. Check the connection and try again.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const code = body.error ? body.error.code : `http_${response.status}`;
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    const plain = PLAIN_ERRORS[code];
    throw new ApiError(code, plain ? plain(message)
      : `${message.charAt(0).toUpperCase()}${message.slice(1)}.`);
  }
  return body;
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("aria-") || key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

// --- reading a digit ---------------------------------------------------------------

let current = null; // the prediction on screen
let previewUrl = null;

function setBusy(busy, message) {
  $("result-card").setAttribute("aria-busy", String(busy));
  $("pad-send").disabled = busy;
  $("file-input").disabled = busy;
  $("status").textContent = message;
  $("status").classList.toggle("busy", busy);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function clearResult() {
  current = null;
  $("result").hidden = true;
  $("placeholder").hidden = false;
}

// The page answers a click at once: the old error or result goes, and it says it is reading.
function startReading(source) {
  showError("");
  clearResult();
  setBusy(true, `Reading ${source}…`);
}

async function predict(file, name, source) {
  startReading(source);
  const form = new FormData();
  form.append("file", file, name);
  try {
    const body = await callApi("/predictions", { method: "POST", body: form });
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    showPrediction(body.predictions[0], previewUrl);
    setBusy(false, `The model reads ${body.predictions[0].digit}.`);
    loadHistory();
  } catch (error) {
    setBusy(false, "");
    showError(error.message);
  }
}

function showPrediction(prediction, sentUrl) {
  current = prediction;
  $("answer-digit").textContent = prediction.digit;
  $("answer-line").textContent = `It is a ${prediction.digit}`;
  $("answer-detail").textContent = `${pct(prediction.confidence)} sure · model ` +
    `${prediction.model_name} version ${prediction.model_version} · ` +
    `${prediction.latency_ms.toFixed(0)} ms`;
  $("preview").src = sentUrl;
  $("model-input").src = `${API}/predictions/${prediction.id}/input.png`;
  $("probabilities").replaceChildren(...prediction.probabilities.map((p, digit) => {
    const top = digit === prediction.digit;
    return element("li", { class: top ? "top" : "" },
      element("span", {}, String(digit)),
      element("span", { class: "track", "aria-hidden": "true" },
        element("span", { class: "fill", style: `width: ${(p * 100).toFixed(1)}%` })),
      element("span", { class: "pct" }, pct(p)));
  }));
  $("feedback-buttons").replaceChildren(...[...Array(10).keys()].map((digit) =>
    element("button", {
      type: "button", textContent: String(digit), "aria-label": `It is a ${digit}`,
      "aria-pressed": String(prediction.label === digit),
      onclick: () => sendFeedback(digit),
    })));
  $("feedback-status").textContent = "";
  $("placeholder").hidden = true;
  $("result").hidden = false;
}

async function sendFeedback(label) {
  const prediction = current;
  if (!prediction) return;
  const previous = prediction.label;
  $("feedback-status").textContent = "Saving…";
  try {
    const updated = await callApi(`/predictions/${prediction.id}/feedback`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label }),
    });
    if (current !== prediction) return;
    current.label = updated.label;
    for (const button of $("feedback-buttons").children) {
      button.setAttribute("aria-pressed", String(button.textContent === String(updated.label)));
    }
    const verdict = updated.label === prediction.digit ? "the model was right" : "the model was wrong";
    $("feedback-status").textContent = previous === null || previous === undefined
      ? `Thanks: saved as ${updated.label} (${verdict}).`
      : `Changed from ${previous} to ${updated.label} (${verdict}).`;
    loadHistory();
  } catch (error) {
    $("feedback-status").textContent = "";
    showError(error.message);
  }
}

function setUpPad() {
  const pad = $("pad");
  const frame = $("pad-frame");
  const context = pad.getContext("2d");
  let drawing = null;
  let inked = false;
  const setInked = (value) => {
    inked = value;
    frame.classList.toggle("inked", value);
    pad.classList.toggle("inked", value);
  };
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * pad.width / box.width,
      (event.clientY - box.top) * pad.height / box.height];
  };
  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = event.pointerId;
    context.lineWidth = 20;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.strokeStyle = "#000";
    context.beginPath();
    context.moveTo(...point(event));
    context.lineTo(...point(event));
    context.stroke();
    setInked(true);
  });
  pad.addEventListener("pointermove", (event) => {
    if (drawing !== event.pointerId) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  const stop = (event) => { if (drawing === event.pointerId) drawing = null; };
  pad.addEventListener("pointerup", stop);
  pad.addEventListener("pointercancel", stop);
  $("pad-clear").onclick = () => {
    context.clearRect(0, 0, pad.width, pad.height);
    setInked(false);
  };
  // The canvas is transparent with black strokes: exactly a canvas export.
  $("pad-send").onclick = () => {
    if (!inked) {
      clearResult();
      showError("The drawing pad is empty. Draw a digit first, then press “Read my drawing”.");
      pad.focus();
      return;
    }
    startReading("your drawing"); // before the export, which finishes later
    pad.toBlob((blob) => predict(blob, "drawing.png", "your drawing"), "image/png");
  };
}

function setUpUpload() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (file) predict(file, file.name, file.name);
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) predict(file, file.name, file.name);
  });
}

// --- history -----------------------------------------------------------------------

let nextCursor = null;

function historyItem(p) {
  const labelled = p.label !== null && p.label !== undefined;
  const wrong = labelled && p.label !== p.digit;
  const when = new Date(p.created_at);
  const badge = !labelled ? ""
    : element("span", { class: `badge ${wrong ? "wrong" : "ok"}` },
      wrong ? `✗ really ${p.label}` : "✓ right");
  return element("li", { class: wrong ? "mismatch" : "", "data-id": p.id },
    element("img", {
      src: `${API}/predictions/${p.id}/input.png`, width: 56, height: 56, loading: "lazy",
      alt: `Model input for a prediction of ${p.digit}`,
    }),
    element("div", {},
      element("div", { class: "line1" }, `Read as ${p.digit}`,
        element("span", { class: "sure" }, ` ${pct(p.confidence)}`), badge),
      element("div", { class: "line2" },
        element("time", { dateTime: p.created_at, title: when.toLocaleString() },
          when.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }))),
      element("div", { class: "line3", title: p.filename || "" }, p.filename || "no file name")));
}

async function loadHistory(append = false) {
  const query = append && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : "";
  try {
    const body = await callApi(`/predictions?limit=12${query}`);
    const items = body.predictions.map(historyItem);
    if (append) $("history").append(...items); else $("history").replaceChildren(...items);
    nextCursor = body.next_cursor;
    $("more").hidden = !nextCursor;
    $("history-empty").hidden = $("history").children.length > 0;
  } catch (error) {
    showError(`The history could not be loaded. ${error.message}`);
  }
}

// --- how it is doing ---------------------------------------------------------------

function barChart(values, labels, title, { height = 160, classes = [] } = {}) {
  const width = 480;
  const top = 16;
  const bottom = 22;
  const max = Math.max(1, ...values);
  const slot = width / values.length;
  const bars = values.map((value, index) => {
    const h = (value / max) * (height - top - bottom);
    const x = index * slot + slot * 0.15;
    const y = height - bottom - h;
    const group = svg("g", {},
      svg("rect", { class: `bar ${classes[index] || ""}`, x, y, width: slot * 0.7, height: h, rx: 2 },
        svg("title", {}, `${labels[index]}: ${value}`)));
    if (values.length <= 31 && value > 0) {
      group.append(svg("text", { x: x + slot * 0.35, y: y - 3, "text-anchor": "middle" },
        String(Number.isInteger(value) ? value : value.toFixed(1))));
    }
    const step = Math.ceil(values.length / 12);
    if (index % step === 0) {
      group.append(svg("text", { x: x + slot * 0.35, y: height - 6, "text-anchor": "middle" },
        labels[index]));
    }
    return group;
  });
  const summary = values.map((v, i) => `${labels[i]}: ${Number.isInteger(v) ? v : v.toFixed(1)}`);
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `${title}. ${summary.join(", ")}` },
  svg("line", { class: "axis", x1: 0, x2: width, y1: height - bottom, y2: height - bottom }),
  ...bars);
}

function bucketLabel(start, seconds) {
  return seconds < 86400
    ? start.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : start.toLocaleDateString([], { month: "short", day: "numeric" });
}

function tile(value, label) {
  return element("div", { class: "tile" },
    element("span", { class: "value" }, value), element("span", { class: "label" }, label));
}

function confusionTable(stats) {
  const max = Math.max(1, ...stats.confusion.flat());
  const head = element("tr", {}, element("td", {}),
    ...[...Array(10).keys()].map((d) => element("th", { scope: "col" }, String(d))));
  const rows = stats.confusion.map((row, label) => element("tr", {},
    element("th", { scope: "row" }, String(label)),
    ...row.map((count, digit) => {
      const level = count === 0 ? 0 : Math.min(4, 1 + Math.floor((count / max) * 3.999));
      return element("td", {
        class: `l${level} ${label === digit ? "diag" : "off"}`,
        title: `said ${label}, read as ${digit}: ${count}`,
      }, String(count));
    })));
  return element("table", { class: "confusion" },
    element("caption", { class: "muted" }, "Feedback label (rows) against the model's answer (columns)"),
    element("thead", {}, head), element("tbody", {}, ...rows));
}

async function loadStats() {
  const days = $("stats-days").value;
  $("stats-status").textContent = "Loading…";
  $("stats-status").classList.add("busy");
  try {
    const stats = await callApi(`/stats?days=${days}`);
    const since = new Date(stats.since);
    const starts = stats.per_bucket.map((_, i) => new Date(since.getTime() + i * stats.bucket_seconds * 1000));
    const latency = stats.latency_ms;
    $("stats-tiles").replaceChildren(
      tile(String(stats.predictions), stats.predictions === 1 ? "prediction" : "predictions"),
      tile(stats.accuracy === null ? "–" : pct(stats.accuracy),
        `right, of ${stats.labelled} with feedback`),
      tile(latency ? `${latency.p50.toFixed(0)} ms` : "–", "typical answer time (median)"),
      tile(latency ? `${latency.p99.toFixed(0)} ms` : "–", "slowest 1% take longer than"));
    $("chart-time").replaceChildren(barChart(stats.per_bucket,
      starts.map((s) => bucketLabel(s, stats.bucket_seconds)),
      `Predictions per ${stats.bucket_seconds < 86400 ? "hour" : "day"}`));
    $("chart-digits").replaceChildren(barChart(stats.digits,
      [...Array(10).keys()].map(String), "Predictions by digit read"));
    $("chart-confusion").replaceChildren(stats.labelled ? confusionTable(stats)
      : element("p", { class: "muted" }, "No feedback in this period yet."));
    $("chart-latency").replaceChildren(latency
      ? barChart([latency.p50, latency.p90, latency.p99, latency.max], ["p50", "p90", "p99", "max"],
        "Answer time in milliseconds by percentile", { classes: ["", "", "p99", "max"] })
      : element("p", { class: "muted" }, "No predictions in this period."));
    $("chart-models").replaceChildren(...(stats.model_versions.length
      ? stats.model_versions.map((m) => element("li", {},
        element("span", {}, `${m.model_name} version ${m.model_version}`),
        element("span", { class: "muted" }, count(m.predictions, "answer")),
        element("span", { class: "feedback muted" }, m.accuracy === null
          ? "No feedback on its answers yet."
          : `${pct(m.accuracy)} right, of ${m.labelled} with feedback`),
        element("span", { class: "share", "aria-hidden": "true" },
          element("span", { style: `width: ${(100 * m.predictions / stats.predictions).toFixed(1)}%` }))))
      : [element("li", {}, "No model answered in this period.")]));
    $("stats-status").textContent = `${count(stats.predictions, "prediction")} from `
      + `${since.toLocaleString()} to ${new Date(stats.until).toLocaleString()}.`;
  } catch (error) {
    $("stats-status").textContent = error.message;
  } finally {
    $("stats-status").classList.remove("busy");
  }
}

// --- views -------------------------------------------------------------------------

function showView() {
  const stats = window.location.hash === "#stats";
  $("view-read").hidden = stats;
  $("view-stats").hidden = !stats;
  $("nav-read").toggleAttribute("aria-current", !stats);
  $("nav-stats").toggleAttribute("aria-current", stats);
  if (stats) $("nav-stats").setAttribute("aria-current", "page");
  else $("nav-read").setAttribute("aria-current", "page");
  document.title = stats ? "How it is doing · Digit reader" : "Digit reader";
  if (stats) loadStats();
}

window.addEventListener("hashchange", () => { showView(); $("content").focus(); });
$("stats-days").addEventListener("change", loadStats);
$("more").onclick = () => loadHistory(true);
setUpPad();
setUpUpload();
showView();
loadHistory();
