// imgclf page, "Try it" tab: classify uploads, pastes, drops and the sample images.

import { $, NO_HAND, classify, el, pct, title } from "./common.js";
import { answeredHand, handNote, showHand } from "./hand.js";
import { selectTab } from "./tabs.js";

const UPLOAD_CONCURRENCY = 4;

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
    // the hand the server finds is drawn over the thumbnail, on a canvas of the same box
    const frame = el("div", "thumb-frame");
    const overlay = el("canvas", "hand-overlay");
    overlay.dataset.testid = "hand-overlay";
    overlay.setAttribute("role", "img");
    frame.append(img, overlay);
    card.append(frame);
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
  const label = el("p", "label", prediction.label === NO_HAND ? "No hand" : title(prediction.label));
  label.dataset.testid = "result-label";
  label.dataset.label = prediction.label;
  const confidence = el("p", "confidence", pct(prediction.confidence));
  confidence.dataset.testid = "result-confidence";
  confidence.dataset.confidence = String(prediction.confidence);
  const model = el("p", "model", `${result.model} v${result.version}`);
  model.dataset.testid = "result-model";
  const head = el("div", "card-head");
  head.append(label, confidence);
  body.append(head, scoreBars(prediction.scores, prediction.label));
  const note = handNote(result);
  if (note) body.append(note);
  body.append(model);
  const overlay = card.querySelector(".hand-overlay");
  if (overlay) showHand(overlay, card.querySelector(".thumb"), answeredHand(result));
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


// ---- samples: a click classifies a picture shipped with the page --------------------------

const SAMPLES = [
  { file: "rock.jpg", alt: "A rendered hand showing rock" },
  { file: "paper.jpg", alt: "A rendered hand showing paper" },
  { file: "scissors.jpg", alt: "A rendered hand showing scissors" },
  { file: "no-hand.jpg", alt: "A portrait of Grace Hopper: no hand" },
];

async function classifySample(sample) {
  try {
    const response = await fetch(`/static/samples/${sample.file}`);
    if (!response.ok) throw new Error(`${response.status}`);
    const blob = await response.blob();
    await classifyFiles([new File([blob], sample.file, { type: blob.type || "image/jpeg" })]);
  } catch (err) {
    $("try-message").textContent = `Could not load the sample ${sample.file}: ${err.message}`;
  }
}

$("sample-list").replaceChildren(...SAMPLES.map((sample) => {
  const item = el("li");
  const button = el("button", "sample");
  button.type = "button";
  button.dataset.testid = "sample";
  button.dataset.file = sample.file;
  button.title = `Classify ${sample.file}`;
  const img = el("img");
  img.src = `/static/samples/${sample.file}`;
  img.alt = sample.alt;
  img.width = 72;
  img.height = 72;
  button.append(img);
  button.addEventListener("click", () => classifySample(sample));
  item.append(button);
  return item;
}));
