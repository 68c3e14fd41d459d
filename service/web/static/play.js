// imgclf page, "Play" tab: rock-paper-scissors against the camera, with a committed computer move.

import { cameraError, cameraMissing, grabFrame, startCamera, stopCamera } from "./camera.js";
import { $, NO_HAND, classify, pct, title } from "./common.js";
import { answeredHand, clearHand, handNote, showHand } from "./hand.js";

const MOVES = ["rock", "paper", "scissors"];
const BEATS = { rock: "scissors", paper: "rock", scissors: "paper" };
const BEAT_MS = 600; // one countdown word

const game = {
  score: { player: 0, computer: 0, draws: 0 },
  stream: null,
  playing: false,
  minConfidence: parseThreshold(new URLSearchParams(location.search).get("min_confidence"), 0.6),
};
const video = $("camera-video");

function parseThreshold(raw, fallback) {
  if (raw === null || raw.trim() === "") return fallback;
  const value = Number(raw);
  return Number.isFinite(value) && value >= 0 && value <= 1 ? value : fallback;
}

async function startPlayCamera() {
  const message = $("camera-message");
  const missing = cameraMissing();
  message.textContent = missing;
  if (missing) return;
  $("camera-start").disabled = true;
  message.textContent = "Asking for the camera…";
  try {
    game.stream = await startCamera(video, { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 } });
  } catch (err) {
    message.textContent = cameraError(err);
    message.dataset.error = (err && err.name) || "Error";
    $("camera-start").disabled = false;
    return;
  }
  delete message.dataset.error;
  message.textContent = "Camera on. Show your hand and press the button.";
  $("camera-placeholder").hidden = true;
  $("camera-start").hidden = true;
  $("camera-start").disabled = false;
  $("camera-stop").hidden = false;
  $("play-round").disabled = false;
}

function stopPlayCamera() {
  stopCamera(video);
  clearHand($("camera-hand"));
  game.stream = null;
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

function renderScore() {
  $("score-player").textContent = String(game.score.player);
  $("score-computer").textContent = String(game.score.computer);
  $("score-draws").textContent = String(game.score.draws);
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
  $("player-hand").replaceChildren();
  clearHand($("camera-hand"));
}

async function playRound() {
  if (game.playing || !game.stream) return;
  game.playing = true;
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
  const frame = await grabFrame(video);
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
    // the hand in the frame just sent, over the camera picture (mirrored as it is shown)
    showHand($("camera-hand"), video, answeredHand(result));
    const note = handNote(result);
    if (note) $("player-hand").replaceChildren(note);
    if (label === NO_HAND) {
      player.textContent = "No hand";
      verdict.textContent = "No hand seen: show your hand to the camera. This round does not count.";
      verdict.dataset.outcome = "retry";
    } else if (confidence < game.minConfidence) {
      verdict.textContent = `Not sure that was ${label} (${pct(confidence)}, need ${pct(game.minConfidence)}): `
        + "show your hand again, closer and in good light. This round does not count.";
      verdict.dataset.outcome = "retry";
    } else if (label === computer) {
      game.score.draws++;
      verdict.textContent = `Draw: both chose ${label}.`;
      verdict.dataset.outcome = "draw";
    } else if (BEATS[label] === computer) {
      game.score.player++;
      verdict.textContent = `You win: ${label} beats ${computer}.`;
      verdict.dataset.outcome = "player";
    } else {
      game.score.computer++;
      verdict.textContent = `Computer wins: ${computer} beats ${label}.`;
      verdict.dataset.outcome = "computer";
    }
    renderScore();
  }
  game.playing = false;
  $("play-round").disabled = !game.stream;
}

$("camera-start").addEventListener("click", startPlayCamera);
$("camera-stop").addEventListener("click", stopPlayCamera);
$("play-round").addEventListener("click", playRound);
$("threshold-note").textContent = `A move counts when the model is at least ${pct(game.minConfidence)} sure.`;

