// imgclf page, the hand behind an answer: its box and skeleton drawn on a <canvas> laid over the picture it was
// found in (an upload's <img>, the camera's <video>), and a line saying whether a hand was seen and what answered.

import { el, pct, state } from "./common.js";

// MediaPipe's 21 landmarks: 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; little 17-20.
const BONES = [
  [0, 1], [1, 2], [2, 3], [3, 4],
  [0, 5], [5, 6], [6, 7], [7, 8],
  [5, 9], [9, 10], [10, 11], [11, 12],
  [9, 13], [13, 14], [14, 15], [15, 16],
  [13, 17], [0, 17], [17, 18], [18, 19], [19, 20],
];
// Bright on any photo, and told apart from each other (the tests tell them apart on the canvas).
const COLOURS = { box: "#ffd43b", bone: "#51cf66", joint: "#ffffff", text: "#1c2130" };

// The server gives MediaPipe's handedness, which assumes a mirrored (selfie) picture. The pictures this page
// sends are as taken (uploads, and camera frames before the selfie view's flip): the person's hand is the other.
const PERSONS_HAND = { Left: "Right", Right: "Left" };
const handName = (hand) => PERSONS_HAND[hand.handedness] || hand.handedness;

const PATHS = {
  pose: "Read from the hand's landmarks (pose classifier)",
  cnn: "Read from the whole picture (image CNN)",
};

// The hand of an answer (`classify`'s result): the hand found; null when the hand stage read the picture and
// found none; undefined when it did not look (IMGCLF_HANDS, or a version without a pose classifier), since
// /predict then also says null.
export function answeredHand(result) {
  const { hand } = result.prediction;
  if (hand) return hand;
  return hand === null && state.handStage[result.version] ? null : undefined;
}

// The line under an answer: "Right hand 95.8%" or "No hand in view", then what answered. null when the
// answer says neither (a server without the hand stage).
export function handNote(result) {
  const hand = answeredHand(result);
  const { path } = result.prediction;
  if (hand === undefined && !path) return null;
  const note = el("p", "hand-note");
  note.dataset.testid = "hand-note";
  if (hand !== undefined) {
    note.dataset.hand = hand ? "found" : "none";
    note.append(el("span", "hand-seen", hand ? `${handName(hand)} hand ${pct(hand.score)}` : "No hand in view"));
  }
  if (path) {
    note.dataset.path = path;
    note.append(el("span", "hand-path", PATHS[path] || `Answered by: ${path}`));
  }
  return note;
}

// The picture's size in its own pixels: what the server's coordinates count.
function pictureSize(media) {
  return media.videoWidth !== undefined ? [media.videoWidth, media.videoHeight]
    : [media.naturalWidth || 0, media.naturalHeight || 0];
}

// Where a picW x picH picture is shown in a boxW x boxH element under CSS `object-fit` (object-position
// centred, its default): the scale on each axis and the offset of the picture's corner.
function placement(boxW, boxH, picW, picH, fit) {
  let sx = boxW / picW;
  let sy = boxH / picH;
  if (fit && fit !== "fill") {
    let s = fit === "cover" ? Math.max(sx, sy) : fit === "none" ? 1 : Math.min(sx, sy);
    if (fit === "scale-down") s = Math.min(s, 1);
    sx = s;
    sy = s;
  }
  return { sx, sy, dx: (boxW - picW * sx) / 2, dy: (boxH - picH * sy) / 2 };
}

// A selfie view is the element flipped by CSS (scaleX(-1)): the drawing flips with it, its text does not.
function isMirrored(transform) {
  if (!transform || transform === "none") return false;
  return new DOMMatrixReadOnly(transform).a < 0;
}

const views = new WeakMap(); // canvas -> { media, hand }: what to draw again when either changes size
const resized = new ResizeObserver((entries) => entries.forEach((entry) => redraw(entry.target)));

// Draws `hand` (a /predict answer's, in the picture's pixels; null or undefined: nothing) on `canvas`, which
// covers `media` exactly; drawn again when the picture loads or the layout resizes it. Cheap enough per frame:
// one canvas, three paths.
export function showHand(canvas, media, hand) {
  if (!views.has(canvas)) {
    resized.observe(canvas);
    for (const event of ["load", "loadedmetadata", "resize"]) media.addEventListener(event, () => redraw(canvas));
  }
  views.set(canvas, { media, hand });
  redraw(canvas);
}

// Empties `canvas` (a new round, the camera off).
export function clearHand(canvas) {
  const view = views.get(canvas);
  if (view) showHand(canvas, view.media, undefined);
}

function redraw(canvas) {
  const view = views.get(canvas);
  if (!view) return;
  if (!canvas.isConnected) { // its card was cleared: let both go
    resized.unobserve(canvas);
    views.delete(canvas);
    return;
  }
  const { media, hand } = view;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  const ratio = window.devicePixelRatio || 1;
  const [pictureW, pictureH] = pictureSize(media);
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio); // resizing also clears it
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const ready = Boolean(pictureW && width); // else hidden (another tab) or not loaded: an event comes back
  canvas.dataset.hand = hand ? (ready ? "drawn" : "pending") : hand === null ? "none" : "";
  canvas.setAttribute("aria-label", hand ? `${handName(hand)} hand found, ${pct(hand.score)}`
    : hand === null ? "No hand in view" : "Nothing drawn");
  if (!hand || !ready) return;

  const style = getComputedStyle(media);
  const { sx, sy, dx, dy } = placement(width, height, pictureW, pictureH, style.objectFit);
  const flip = isMirrored(style.transform);
  const X = (x) => (flip ? width - (dx + x * sx) : dx + x * sx);
  const Y = (y) => dy + y * sy;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const line = Math.min(3, Math.max(1.5, Math.min(width, height) / 150));

  const [x0, y0, x1, y1] = hand.box;
  const left = Math.min(X(x0), X(x1));
  const top = Y(y0);
  ctx.lineWidth = line;
  ctx.strokeStyle = COLOURS.box;
  ctx.strokeRect(left, top, Math.abs(X(x1) - X(x0)), Y(y1) - top);

  // handedness and score on a tab above the box (inside it when the box touches the top), kept in view;
  // before the skeleton, which is drawn over it
  const size = Math.max(10, Math.min(14, Math.round(width / 30)));
  ctx.font = `600 ${size}px system-ui, sans-serif`;
  const text = `${handName(hand)} ${pct(hand.score)}`;
  const tabW = ctx.measureText(text).width + 8;
  const tabH = size + 6;
  const tabX = Math.max(0, Math.min(left - line / 2, width - tabW));
  const tabY = top - tabH >= 0 ? top - tabH : Math.max(0, top);
  ctx.fillStyle = COLOURS.box;
  ctx.fillRect(tabX, tabY, tabW, tabH);
  ctx.fillStyle = COLOURS.text;
  ctx.textBaseline = "middle";
  ctx.fillText(text, tabX + 4, tabY + tabH / 2 + 0.5);

  const points = hand.landmarks.map(([x, y]) => [X(x), Y(y)]);
  ctx.beginPath();
  for (const [a, b] of BONES) {
    ctx.moveTo(points[a][0], points[a][1]);
    ctx.lineTo(points[b][0], points[b][1]);
  }
  ctx.strokeStyle = COLOURS.bone;
  ctx.lineCap = "round";
  ctx.stroke();
  ctx.beginPath();
  for (const [x, y] of points) {
    ctx.moveTo(x + line * 1.2, y);
    ctx.arc(x, y, line * 1.2, 0, 2 * Math.PI);
  }
  ctx.fillStyle = COLOURS.joint;
  ctx.fill();
}
