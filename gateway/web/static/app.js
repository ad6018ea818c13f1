"use strict";
// The upload page: everything goes through the JSON API (/api/v1).
const api = "/api/v1/predictions";
const $ = (id) => document.getElementById(id);
let nextCursor = null;

async function callApi(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function showPrediction(prediction, previewUrl) {
  $("preview").src = previewUrl;
  $("answer").textContent = `The number in the picture is ${prediction.digit}`;
  $("confidence").textContent = `Confidence ${(prediction.confidence * 100).toFixed(1)}% ` +
    `(model ${prediction.model_name} v${prediction.model_version})`;
  const bars = $("probabilities");
  bars.replaceChildren(...prediction.probabilities.map((p, digit) => {
    const row = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(p * 100).toFixed(1)}%`;
    row.append(String(digit), bar, `${(p * 100).toFixed(1)}%`);
    return row;
  }));
  $("feedback-buttons").replaceChildren(...[...Array(10).keys()].map((digit) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = digit;
    button.onclick = () => sendFeedback(prediction.id, digit);
    return button;
  }));
  $("result").hidden = false;
}

async function predict(file, name) {
  showError("");
  const form = new FormData();
  form.append("file", file, name);
  try {
    const body = await callApi(api, { method: "POST", body: form });
    showPrediction(body.predictions[0], URL.createObjectURL(file));
    await loadHistory();
  } catch (error) {
    showError(error.message);
  }
}

async function sendFeedback(id, label) {
  try {
    await callApi(`${api}/${id}/feedback`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label }),
    });
    await loadHistory();
  } catch (error) {
    showError(error.message);
  }
}

function historyRow(p) {
  const row = document.createElement("tr");
  const cells = [new Date(p.created_at).toLocaleString(), p.filename || "—", p.digit,
    `${(p.confidence * 100).toFixed(1)}%`, p.label ?? ""];
  row.replaceChildren(...cells.map((value) => {
    const cell = document.createElement("td");
    cell.textContent = value;
    return cell;
  }));
  return row;
}

async function loadHistory(append = false) {
  const url = append && nextCursor ? `${api}?limit=10&cursor=${encodeURIComponent(nextCursor)}`
    : `${api}?limit=10`;
  try {
    const body = await callApi(url);
    const rows = body.predictions.map(historyRow);
    const tbody = $("history").tBodies[0];
    if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
    nextCursor = body.next_cursor;
    $("more").hidden = !nextCursor;
  } catch (error) {
    showError(error.message);
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) predict(file, file.name);
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) predict(file, file.name);
  });
}

function setUpPad() {
  const pad = $("pad");
  const context = pad.getContext("2d");
  context.lineWidth = 18;
  context.lineCap = "round";
  context.lineJoin = "round";
  let drawing = false;
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  };
  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    context.beginPath();
    context.moveTo(...point(event));
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineTo(...point(event));
    context.stroke();
  });
  window.addEventListener("pointerup", () => { drawing = false; });
  $("pad-clear").onclick = () => context.clearRect(0, 0, pad.width, pad.height);
  // The canvas is transparent with black strokes: exactly a canvas export.
  $("pad-send").onclick = () => pad.toBlob((blob) => predict(blob, "drawing.png"), "image/png");
}

$("more").onclick = () => loadHistory(true);
setUpDropZone();
setUpPad();
loadHistory();
