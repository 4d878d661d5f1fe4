// Playground (GET /): collects a text, an image (upload or webcam snapshot) and an audio clip (upload or
// microphone recording), POSTs them as multipart/form-data to v1/predict (relative, so it works under a
// proxy path prefix) and draws the probabilities. No framework, no build step, no external host.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, audio: null, stream: null, recorder: null };

// --- media capture ----------------------------------------------------------------------------------
const canCapture = Boolean(window.isSecureContext && navigator.mediaDevices &&
  navigator.mediaDevices.getUserMedia);
const canRecord = canCapture && typeof window.MediaRecorder === "function";

function setMedia(kind, blob, name, how) {
  state[kind] = blob ? { blob, name } : null;
  const preview = $(kind === "image" ? "image-preview" : "audio-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !blob;
  if (blob) preview.src = URL.createObjectURL(blob); else preview.removeAttribute("src");
  $(kind + "-status").textContent = blob ? `${how}: ${name}, ${blob.size} bytes` : "";
}

function stopStream() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
}

async function startCamera() {
  try {
    stopStream();
    state.stream = await navigator.mediaDevices.getUserMedia({ video: true });
    const video = $("camera");
    video.srcObject = state.stream;
    video.hidden = false;
    $("image-status").textContent = "Starting the webcam…";
    video.onplaying = () => {  // a snapshot needs the first frame (and its size)
      $("camera-snap").disabled = false;
      $("image-status").textContent = "Webcam on: take a snapshot.";
    };
  } catch (err) {
    $("image-status").textContent = `Webcam unavailable: ${err.message || err.name}`;
  }
}

function snapshot() {
  const video = $("camera");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    stopStream();
    video.hidden = true;
    $("camera-snap").disabled = true;
    setMedia("image", blob, "webcam.jpg", "Snapshot");
  }, "image/jpeg", 0.9);
}

function recordingType() {
  // What the service decodes (README: WebM, Ogg/Opus, ...); else the browser's default.
  const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
  return types.find((t) => MediaRecorder.isTypeSupported(t)) || "";
}

async function toggleRecording() {
  const button = $("record");
  if (state.recorder) { state.recorder.stop(); return; }
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    $("audio-status").textContent = `Microphone unavailable: ${err.message || err.name}`;
    return;
  }
  const type = recordingType();
  const recorder = new MediaRecorder(state.stream, type ? { mimeType: type } : {});
  const chunks = [];
  const started = performance.now();
  recorder.ondataavailable = (e) => {
    if (e.data.size) chunks.push(e.data);
    const seconds = (performance.now() - started) / 1000;
    $("audio-status").textContent = `Recording… ${seconds.toFixed(1)} s`;
    $("audio-status").dataset.recordedS = seconds.toFixed(1);
  };
  recorder.onstop = () => {
    stopStream();
    state.recorder = null;
    button.textContent = "Record from microphone";
    button.setAttribute("aria-pressed", "false");
    const mime = recorder.mimeType || type || "audio/webm";
    const ext = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
    setMedia("audio", new Blob(chunks, { type: mime }), `recording.${ext}`, "Recorded");
  };
  state.recorder = recorder;
  recorder.start(250); // a dataavailable event every 250 ms shows the recorded length
  button.textContent = "Stop recording";
  button.setAttribute("aria-pressed", "true");
  $("audio-status").textContent = "Recording…";
}

// --- results ----------------------------------------------------------------------------------------
function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bars(probabilities, scope) {
  const list = el("div", { class: "bars" });
  for (const [label, p] of Object.entries(probabilities)) {
    const pct = (Math.max(0, Math.min(1, Number(p))) * 100).toFixed(1);
    const row = el("div", { class: "row" });
    const id = `${scope}-${label}`.replace(/[^\w-]/g, "_");
    row.append(el("span", { id: id + "-label" }, label));
    const track = el("div", { class: "track" });
    const bar = el("div", {
      class: "bar", role: "meter", "aria-labelledby": id + "-label", "aria-valuemin": "0",
      "aria-valuemax": "1", "aria-valuenow": String(p), "data-label": label, "data-value": String(p),
    });
    bar.style.width = pct + "%";
    track.append(bar);
    row.append(track, el("span", { class: "value" }, pct + " %"));
    list.append(row);
  }
  return list;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isPart = (v) => isObject(v) && ("used" in v || "reason" in v || "probabilities" in v);

// One modality (or a part of one, e.g. modalities.image.face): used/reason, bars, scalar details, and
// any nested parts, whatever keys the response has.
function section(name, info, scope) {
  const box = el("div", { class: "modality", "data-modality": scope });
  box.append(el("h3", {}, name));
  if (info.used === false || (info.reason !== undefined && info.reason !== null)) {
    box.append(el("p", { class: "reason" }, `not used: ${info.reason ?? "no reason given"}`));
  }
  if (isObject(info.probabilities)) box.append(bars(info.probabilities, scope));
  const details = Object.entries(info)
    .filter(([k, v]) => !["used", "reason", "probabilities"].includes(k) && (v === null || typeof v !== "object"))
    .map(([k, v]) => `${k}: ${v}`);
  if (details.length) box.append(el("p", { class: "details" }, details.join(" · ")));
  for (const [k, v] of Object.entries(info)) {
    if (k !== "probabilities" && isPart(v)) box.append(section(k, v, `${scope}.${k}`));
  }
  return box;
}

function reasons(modalities) {
  return Object.entries(modalities || {})
    .filter(([, v]) => isObject(v) && v.reason)
    .map(([k, v]) => `${k}: ${v.reason}`);
}

function render(data) {
  const body = $("result-body");
  body.replaceChildren();
  if (data.label === null || data.label === undefined) {
    const why = [data.reason, ...reasons(data.modalities)].filter(Boolean).join("; ");
    body.append(el("p", { id: "label", class: "label" }, `No usable evidence${why ? ` (${why})` : ""}`));
  } else {
    body.append(el("p", { id: "label", class: "label" }, `Label: ${data.label}`));
  }
  if (isObject(data.probabilities)) {
    const fused = section("fused", { probabilities: data.probabilities }, "fused");
    body.append(fused);
  }
  for (const [name, info] of Object.entries(data.modalities || {})) {
    if (isObject(info)) body.append(section(name, info, name));
  }
}

async function predict(event) {
  event.preventDefault();
  const form = new FormData();
  const text = $("text").value;
  if (text.trim()) form.append("text", text);
  if (state.image) form.append("image", state.image.blob, state.image.name);
  if (state.audio) form.append("audio", state.audio.blob, state.audio.name);
  const status = $("result-status");
  $("result").setAttribute("aria-busy", "true");
  $("predict").disabled = true;
  status.className = "status";
  status.textContent = "Predicting…";
  try {
    const key = $("api-key").value.trim();
    const headers = key ? { "X-API-Key": key } : {};
    const response = await fetch("v1/predict", { method: "POST", body: form, headers });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = data.error || {};
      status.className = "status error";
      status.textContent = `${response.status} ${error.type || "error"}: ${error.message || response.statusText}`;
      $("result-body").replaceChildren();
      return;
    }
    status.textContent = `200 OK · ${data.timings ? data.timings.total_ms + " ms" : ""}`;
    render(data);
  } catch (err) {
    status.className = "status error";
    status.textContent = `Request failed: ${err.message}`;
  } finally {
    $("predict").disabled = false;
    $("result").setAttribute("aria-busy", "false");
    $("result").dataset.done = String(Number($("result").dataset.done || 0) + 1);
  }
}

// --- wiring -----------------------------------------------------------------------------------------
$("form").addEventListener("submit", predict);
$("image-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  setMedia("image", file || null, file ? file.name : "", "Upload");
});
$("audio-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  setMedia("audio", file || null, file ? file.name : "", "Upload");
});
$("image-clear").addEventListener("click", () => { $("image-file").value = ""; setMedia("image", null); });
$("audio-clear").addEventListener("click", () => { $("audio-file").value = ""; setMedia("audio", null); });
$("camera-start").addEventListener("click", startCamera);
$("camera-snap").addEventListener("click", snapshot);
$("record").addEventListener("click", toggleRecording);
if (!canCapture || !canRecord) {
  $("media-note").hidden = false;
  if (!canCapture) $("camera-start").disabled = true;
  $("record").disabled = true;
}
document.body.dataset.ready = "true";
