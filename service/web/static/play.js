// imgclf page, "Play" tab: rock-paper-scissors against the camera, with a committed computer move.
"use strict";

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
    if (label === NO_HAND) {
      player.textContent = "No hand";
      verdict.textContent = "No hand seen: show your hand to the camera. This round does not count.";
      verdict.dataset.outcome = "retry";
    } else if (confidence < state.minConfidence) {
      verdict.textContent = `Not sure that was ${label} (${pct(confidence)}, need ${pct(state.minConfidence)}): `
        + "show your hand again, closer and in good light. This round does not count.";
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

