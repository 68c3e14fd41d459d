// imgclf page: classify uploads, play rock-paper-scissors against the camera, pick the model version.
"use strict";

const MOVES = ["rock", "paper", "scissors"];
const BEATS = { rock: "scissors", paper: "rock", scissors: "paper" };
const BEAT_MS = 600; // one countdown word
const UPLOAD_CONCURRENCY = 4;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = {
  target: "", // "" (latest), "label:NAME" or "version:N": applies to every request
  score: { player: 0, computer: 0, draws: 0 },
  stream: null,
  playing: false,
  minConfidence: parseThreshold(params.get("min_confidence"), 0.6),
};

function parseThreshold(raw, fallback) {
  if (raw === null || raw.trim() === "") return fallback;
  const value = Number(raw);
  return Number.isFinite(value) && value >= 0 && value <= 1 ? value : fallback;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const pct = (p) => `${(p * 100).toFixed(1)}%`;
const title = (s) => s.charAt(0).toUpperCase() + s.slice(1);

// ---- API -----------------------------------------------------------------------------------

function predictUrl() {
  const [kind, value] = state.target.split(":");
  if (kind === "label") return `/predict?label=${encodeURIComponent(value)}`;
  if (kind === "version") return `/predict?version=${encodeURIComponent(value)}`;
  return "/predict";
}

async function errorText(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch {
    // not JSON (e.g. a proxy's page): keep the status line
  }
  const retry = response.headers.get("Retry-After");
  if ((response.status === 429 || response.status === 503) && retry) {
    message += ` (server busy: try again in ${retry} s)`;
  }
  return message;
}

// One image per request, so one bad file gets its own error and does not sink the others.
async function classify(blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  let response;
  try {
    response = await fetch(predictUrl(), { method: "POST", body: form });
  } catch {
    throw new Error("Could not reach the server.");
  }
  if (!response.ok) throw new Error(await errorText(response));
  const body = await response.json();
  return { model: body.model_name, version: body.model_version, prediction: body.predictions[0] };
}

// ---- tabs ----------------------------------------------------------------------------------

const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

function selectTab(tab, focus) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-model") loadModels();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab, false));
  tab.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    selectTab(tabs[(next + tabs.length) % tabs.length], true);
  });
}

// ---- Try it --------------------------------------------------------------------------------

const results = $("results");
const objectUrls = [];

function scoreBars(scores, best) {
  const list = el("ul", "bars");
  for (const label of Object.keys(scores).sort()) {
    const row = el("li", label === best ? "bar best" : "bar");
    row.dataset.label = label;
    const track = el("span", "track");
    const fill = el("span", "fill");
    fill.style.width = pct(scores[label]); // CSSOM, which the page's CSP allows
    track.append(fill);
    row.append(el("span", "bar-label", label), track, el("span", "bar-value", pct(scores[label])));
    list.append(row);
  }
  return list;
}

function resultCard(file) {
  const card = el("li", "card pending");
  card.dataset.testid = "result-card";
  card.dataset.filename = file.name;
  if (file.type.startsWith("image/")) {
    const img = el("img", "thumb");
    const url = URL.createObjectURL(file);
    objectUrls.push(url);
    img.src = url;
    img.alt = file.name;
    card.append(img);
  } else {
    card.append(el("div", "thumb none", (file.name.split(".").pop() || "?").slice(0, 4)));
  }
  const body = el("div", "card-body");
  body.append(el("p", "filename", file.name), el("p", "status", "Classifying…"));
  card.append(body);
  return card;
}

function fillCard(card, result) {
  const { prediction } = result;
  const body = card.querySelector(".card-body");
  body.querySelector(".status").remove();
  const label = el("p", "label", title(prediction.label));
  label.dataset.testid = "result-label";
  label.dataset.label = prediction.label;
  const confidence = el("p", "confidence", pct(prediction.confidence));
  confidence.dataset.testid = "result-confidence";
  confidence.dataset.confidence = String(prediction.confidence);
  const model = el("p", "model", `${result.model} v${result.version}`);
  model.dataset.testid = "result-model";
  const head = el("div", "card-head");
  head.append(label, confidence);
  body.append(head, scoreBars(prediction.scores, prediction.label), model);
  card.classList.remove("pending");
}

function failCard(card, message) {
  const status = card.querySelector(".status");
  status.textContent = message;
  status.className = "error";
  status.dataset.testid = "result-error";
  card.classList.remove("pending");
  card.classList.add("failed");
}

async function classifyFiles(files) {
  if (files.length === 0) return;
  const cards = files.map(resultCard);
  results.prepend(...cards);
  $("clear-results").hidden = false;
  $("try-message").textContent = `Classifying ${files.length} file${files.length === 1 ? "" : "s"}…`;
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      try {
        fillCard(cards[i], await classify(files[i], files[i].name));
      } catch (err) {
        failed++;
        failCard(cards[i], err.message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(UPLOAD_CONCURRENCY, files.length) }, worker));
  $("try-message").textContent = failed
    ? `${files.length - failed} classified, ${failed} failed.`
    : `${files.length} classified.`;
}

$("file-input").addEventListener("change", (event) => {
  const files = Array.from(event.target.files || []);
  event.target.value = ""; // choosing the same file again still fires change
  classifyFiles(files);
});

const dropzone = $("dropzone");
dropzone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropzone.classList.add("over");
});
dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("over");
  classifyFiles(Array.from(event.dataTransfer?.files || []));
});

document.addEventListener("paste", (event) => {
  const files = Array.from(event.clipboardData?.files || []).filter((f) => f.type.startsWith("image/"));
  if (files.length === 0) return;
  event.preventDefault();
  selectTab($("tab-try"), false);
  // a pasted bitmap arrives as "image.png" whatever it is: give it a name that tells pastes apart
  const named = files.map((f, i) => new File([f], `pasted-${i + 1}.${f.type.split("/")[1]}`, { type: f.type }));
  classifyFiles(named);
});

$("clear-results").addEventListener("click", () => {
  results.replaceChildren();
  objectUrls.splice(0).forEach((url) => URL.revokeObjectURL(url));
  $("clear-results").hidden = true;
  $("try-message").textContent = "";
});

// ---- Play ----------------------------------------------------------------------------------

const video = $("camera-video");

function cameraError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "Camera permission was refused. Allow the camera for this site in your browser's "
        + "settings, then press Start camera again.";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect one and press Start camera again, or upload photos in Try it.";
    case "NotReadableError":
    case "TrackStartError":
      return "The camera is busy in another application. Close it there and press Start camera again.";
    default:
      return `The camera could not start: ${(err && err.message) || err}`;
  }
}

async function startCamera() {
  const message = $("camera-message");
  message.textContent = "";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    message.textContent = "This browser gives no camera to this page (it needs https or localhost).";
    return;
  }
  $("camera-start").disabled = true;
  message.textContent = "Asking for the camera…";
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
  } catch (err) {
    message.textContent = cameraError(err);
    message.dataset.error = (err && err.name) || "Error";
    $("camera-start").disabled = false;
    return;
  }
  delete message.dataset.error;
  video.srcObject = state.stream;
  const firstFrame = new Promise((resolve) => video.addEventListener("loadeddata", resolve, { once: true }));
  try {
    await video.play();
  } catch {
    // autoplay of a muted stream is allowed; a refusal here only delays the first frame
  }
  if (!video.videoWidth) await firstFrame; // no round before there is a picture to send
  video.dataset.live = "true";
  message.textContent = "Camera on. Show your hand and press the button.";
  $("camera-placeholder").hidden = true;
  $("camera-start").hidden = true;
  $("camera-start").disabled = false;
  $("camera-stop").hidden = false;
  $("play-round").disabled = false;
}

function stopCamera() {
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  video.srcObject = null;
  delete video.dataset.live;
  $("camera-placeholder").hidden = false;
  $("camera-start").hidden = false;
  $("camera-stop").hidden = true;
  $("play-round").disabled = true;
  $("camera-message").textContent = "Camera off.";
}

// Uniform over the three moves: reject the top byte values that would bias the modulo.
function randomMove() {
  const byte = new Uint8Array(1);
  do crypto.getRandomValues(byte); while (byte[0] >= 255);
  return MOVES[byte[0] % 3];
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(text) {
  if (!crypto.subtle) return null; // only in secure contexts; the round still works without it
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function captureFrame() {
  if (!video.videoWidth) return Promise.resolve(null);
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

function renderScore() {
  $("score-player").textContent = String(state.score.player);
  $("score-computer").textContent = String(state.score.computer);
  $("score-draws").textContent = String(state.score.draws);
}

function resetRound() {
  const move = $("computer-move");
  move.textContent = "?";
  move.dataset.revealed = "false";
  delete move.dataset.move;
  $("commitment").textContent = "";
  $("player-move").textContent = "?";
  delete $("player-move").dataset.move;
  $("player-confidence").textContent = "";
  $("round-result").textContent = "";
  delete $("round-result").dataset.outcome;
  $("player-frame").hidden = true;
}

async function playRound() {
  if (state.playing || !state.stream) return;
  state.playing = true;
  $("play-round").disabled = true;
  const round = $("round");
  const sequence = [];
  const mark = (step) => {
    sequence.push(step);
    round.dataset.sequence = sequence.join(",");
  };
  resetRound();

  // The computer commits first: its move is fixed (and hashed) before the player's frame exists.
  const computer = randomMove();
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const commitment = await sha256(`${computer}:${nonce}`);
  $("computer-status").textContent = "Computer has chosen (hidden until your move is read)";
  const move = $("computer-move");
  move.dataset.revealed = "false";
  if (commitment) {
    $("commitment").textContent = `Commitment sha256: ${commitment.slice(0, 16)}…`;
    $("commitment").dataset.commitment = commitment;
  }
  mark("commit");

  const countdown = $("countdown");
  for (const word of ["Rock…", "Paper…", "Scissors…", "Shoot!"]) {
    countdown.textContent = word;
    await sleep(BEAT_MS);
  }
  const frame = await captureFrame();
  countdown.textContent = "";
  mark("capture");

  let result = null;
  let failure = null;
  if (!frame) {
    failure = "No picture from the camera yet: wait a moment and play again.";
  } else {
    const frameImg = $("player-frame");
    if (frameImg.src) URL.revokeObjectURL(frameImg.src);
    frameImg.src = URL.createObjectURL(frame);
    frameImg.hidden = false;
    try {
      result = await classify(frame, "frame.jpg");
    } catch (err) {
      failure = `The server could not read the frame: ${err.message}`;
    }
  }
  mark("classify");

  move.textContent = title(computer);
  move.dataset.move = computer;
  move.dataset.revealed = "true";
  $("computer-status").textContent = "Computer chose";
  if (commitment) {
    $("commitment").textContent = `sha256("${computer}:${nonce}") = ${commitment.slice(0, 16)}…`;
    $("commitment").dataset.nonce = nonce;
  }
  mark("reveal");

  const verdict = $("round-result");
  if (failure) {
    verdict.textContent = failure;
    verdict.dataset.outcome = "error";
  } else {
    const { label, confidence } = result.prediction;
    const player = $("player-move");
    player.textContent = title(label);
    player.dataset.move = label;
    $("player-confidence").textContent = `${pct(confidence)} sure (${result.model} v${result.version})`;
    if (confidence < state.minConfidence) {
      verdict.textContent = `Not sure that was ${label} (${pct(confidence)}, need ${pct(state.minConfidence)}): `
        + "show your hand again. This round does not count.";
      verdict.dataset.outcome = "retry";
    } else if (label === computer) {
      state.score.draws++;
      verdict.textContent = `Draw: both chose ${label}.`;
      verdict.dataset.outcome = "draw";
    } else if (BEATS[label] === computer) {
      state.score.player++;
      verdict.textContent = `You win: ${label} beats ${computer}.`;
      verdict.dataset.outcome = "player";
    } else {
      state.score.computer++;
      verdict.textContent = `Computer wins: ${computer} beats ${label}.`;
      verdict.dataset.outcome = "computer";
    }
    renderScore();
  }
  state.playing = false;
  $("play-round").disabled = !state.stream;
}

$("camera-start").addEventListener("click", startCamera);
$("camera-stop").addEventListener("click", stopCamera);
$("play-round").addEventListener("click", playRound);
$("threshold-note").textContent = `A move counts when the model is at least ${pct(state.minConfidence)} sure.`;

// ---- Model ---------------------------------------------------------------------------------

function fillSelect(models) {
  const select = $("model-select");
  const options = [new Option(`Latest available${models.default_version ? ` (v${models.default_version})` : ""}`, "")];
  for (const [label, version] of Object.entries(models.version_labels || {})) {
    options.push(new Option(`Label “${label}” (v${version})`, `label:${label}`));
  }
  for (const v of models.versions) {
    if (v.state === "AVAILABLE") options.push(new Option(`Version ${v.version}`, `version:${v.version}`));
  }
  select.replaceChildren(...options);
  // keep the choice across refreshes while it still exists
  select.value = options.some((o) => o.value === state.target) ? state.target : "";
  state.target = select.value;
}

function fillTable(models) {
  const named = (version) => Object.keys(models.version_labels || {})
    .filter((label) => models.version_labels[label] === version);
  const rows = models.versions.map((v) => {
    const row = el("tr");
    row.dataset.testid = "version-row";
    row.dataset.version = String(v.version);
    const stateCell = el("td", `state state-${v.state.toLowerCase()}`, v.state);
    stateCell.dataset.testid = "version-state";
    if (v.error) stateCell.title = v.error;
    const accuracy = typeof v.val_accuracy === "number" ? pct(v.val_accuracy) : "–";
    const created = v.created ? String(v.created).replace("T", " ").slice(0, 16) : "–";
    const labels = el("td", "", named(v.version).join(", ") || "–");
    labels.dataset.testid = "version-labels";
    row.append(el("td", "", `v${v.version}`), stateCell, labels, el("td", "", v.labels.join(", ") || "–"),
      el("td", "", accuracy), el("td", "", created));
    // each cell names its column, for the stacked layout on narrow screens
    const headers = document.querySelectorAll(".versions thead th");
    row.querySelectorAll("td").forEach((cell, i) => { cell.dataset.col = headers[i].textContent; });
    if (v.error) {
      const note = el("tr", "error-row");
      const cell = el("td", "error", v.error);
      cell.colSpan = 6;
      note.append(cell);
      return [row, note];
    }
    return [row];
  });
  $("versions-body").replaceChildren(...rows.flat());
}

async function loadModels() {
  const status = $("model-status");
  try {
    const response = await fetch("/models");
    if (!response.ok) throw new Error(await errorText(response));
    const models = await response.json();
    fillSelect(models);
    fillTable(models);
    $("models-caption").textContent = `Versions of “${models.name}”`;
    status.textContent = models.ready
      ? `${models.name} · v${models.default_version} ready`
      : `${models.name} · loading…`;
    status.dataset.ready = String(models.ready);
    $("model-message").textContent = models.versions.length ? "" : "No version found yet.";
  } catch (err) {
    status.textContent = "Server unreachable";
    status.dataset.ready = "false";
    $("model-message").textContent = `Could not load the model list: ${err.message}`;
  }
}

$("model-select").addEventListener("change", (event) => {
  state.target = event.target.value;
});
$("models-refresh").addEventListener("click", loadModels);

loadModels();
