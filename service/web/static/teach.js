// imgclf page, "Teach" tab: capture labelled frames, fine-tune a new version, see the gate, roll back.

import { cameraError, cameraMissing, grabFrame, startCamera } from "./camera.js";
import { $, NO_HAND, api, el, errorText, hasApiKey, pct, title } from "./common.js";
import { loadModels } from "./model.js";

const CAPTURE_MS = 150; // one frame per 150 ms while a class's button is held
const teach = {
  model: null, labels: [], counts: {}, withoutHand: {}, stream: null, holding: null, job: null, events: null,
};
const teachVideo = $("teach-video");

const teachApi = (path) => `/v1/models/${encodeURIComponent(teach.model)}${path}`;

function teachMessage(text, isError) {
  const message = $("teach-message");
  message.textContent = text;
  if (isError) message.dataset.error = "true";
  else delete message.dataset.error;
}

// The tab shows only when the server has the teach endpoints on (IMGCLF_TEACH). Run again once the
// user gives an API key, in case a 401 stopped it.
async function initTeach() {
  if (!$("tab-teach").hidden) return;
  try {
    const models = await (await api("/models")).json();
    if (!models.teach) return; // asked first, so a server without them sees no 404 from the page
    teach.model = models.name;
    const response = await api(teachApi("/examples"));
    if (!response.ok) return;
    const listing = await response.json();
    teach.labels = listing.labels;
    $("tab-teach").hidden = false;
    renderClasses();
    applyCounts(listing.counts, listing.without_hand);
    for (const ex of listing.examples) addThumb(ex.id, ex.label, exampleImage(ex.id), ex.hand);
    const jobs = await (await api(teachApi("/finetunes"))).json();
    const running = jobs.jobs.find((job) => job.state === "running");
    if (running) followJob(running.id);
  } catch {
    // no teach endpoints or no server: the tab stays hidden
  }
}

function renderClasses() {
  const buttons = teach.labels.map((label) => {
    const button = el("button", "button", "");
    button.type = "button";
    button.dataset.testid = "teach-class";
    button.dataset.label = label;
    button.disabled = true;
    button.addEventListener("pointerdown", (event) => { event.preventDefault(); startHolding(label, button); });
    for (const end of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(end, stopHolding);
    return button;
  });
  $("teach-classes").replaceChildren(...buttons);
  if (!$("teach-no-hand")) {
    // where the hand stage found no hand in an example, the pose classifier cannot learn from it
    const note = el("p", "hint", "");
    note.id = "teach-no-hand";
    note.dataset.testid = "teach-no-hand";
    note.hidden = true;
    $("teach-classes").after(note);
  }
}

// `withoutHand`: per label, the examples in which the server's hand stage found no hand (absent when the
// reply does not say, e.g. after an error: the last known counts stay).
function applyCounts(counts, withoutHand) {
  teach.counts = counts;
  if (withoutHand) teach.withoutHand = withoutHand;
  // a "No hand" example is meant to show none
  const noHand = Object.entries(teach.withoutHand).reduce((sum, [label, n]) => sum + (label === NO_HAND ? 0 : n), 0);
  const note = $("teach-no-hand");
  if (note) {
    note.hidden = noHand === 0;
    note.dataset.count = String(noHand);
    note.textContent = `${noHand} without a hand: used for the image model only.`;
  }
  for (const button of document.querySelectorAll('[data-testid="teach-class"]')) {
    const label = button.dataset.label;
    const name = label === NO_HAND ? "No hand" : title(label);
    button.textContent = `Hold: ${name} (${counts[label] || 0})`;
    button.dataset.count = String(counts[label] || 0);
  }
  const taught = Object.values(counts).filter((n) => n > 0);
  $("teach-train").disabled = !taught.length || taught.some((n) => n < 2) || teach.job !== null;
}

async function startTeachCamera() {
  const missing = cameraMissing();
  if (missing) {
    teachMessage(missing, true);
    return;
  }
  try {
    teach.stream = await startCamera(teachVideo, { width: { ideal: 320 } });
  } catch (err) {
    teachMessage(cameraError(err), true);
    return;
  }
  $("teach-placeholder").hidden = true;
  $("teach-camera-start").hidden = true;
  document.querySelectorAll('[data-testid="teach-class"]').forEach((b) => { b.disabled = false; });
  teachMessage("Hold a button while you show that move.");
}

function startHolding(label, button) {
  if (teach.holding || !teach.stream) return;
  button.dataset.holding = "true";
  teach.holding = { label, button, timer: null, busy: false };
  const tick = async () => {
    const holding = teach.holding;
    if (!holding || holding.busy) return;
    holding.busy = true;
    try {
      await captureOne(label);
    } finally {
      holding.busy = false;
    }
  };
  tick();
  teach.holding.timer = setInterval(tick, CAPTURE_MS);
}

function stopHolding() {
  if (!teach.holding) return;
  clearInterval(teach.holding.timer);
  delete teach.holding.button.dataset.holding;
  teach.holding = null;
}

async function captureOne(label) {
  const blob = await grabFrame(teachVideo);
  if (!blob) return; // the video has no picture this moment: the next tick tries again
  const form = new FormData();
  form.append("file", blob, "frame.jpg");
  form.append("label", label);
  const response = await api(teachApi("/examples"), { method: "POST", body: form });
  if (!response.ok) {
    stopHolding();
    teachMessage(await errorText(response), true);
    return;
  }
  const body = await response.json();
  applyCounts(body.counts, body.without_hand);
  if (body.created) addThumb(body.id, label, URL.createObjectURL(blob), body.hand);
}

// A stored example's image: by URL, or through api() when a key is needed (an <img> cannot send it).
async function exampleImage(id) {
  if (!hasApiKey()) return teachApi(`/examples/${id}`);
  const response = await api(teachApi(`/examples/${id}`));
  return response.ok ? URL.createObjectURL(await response.blob()) : "";
}

// `hand`: whether the hand stage found a hand in the frame (null: the server did not run it).
function addThumb(id, label, src, hand) {
  const item = el("li");
  item.dataset.testid = "teach-thumb";
  item.dataset.id = id;
  item.dataset.label = label;
  if (hand === true || hand === false) item.dataset.hand = String(hand);
  const img = el("img");
  Promise.resolve(src).then((url) => { img.src = url; });
  img.alt = `${label} example`;
  const remove = el("button", "", "×");
  remove.type = "button";
  remove.title = "Delete this frame";
  remove.setAttribute("aria-label", `Delete this ${label} frame`);
  remove.dataset.testid = "teach-thumb-delete";
  remove.addEventListener("click", async () => {
    const response = await api(teachApi(`/examples/${id}`), { method: "DELETE" });
    if (!response.ok && response.status !== 404) {
      teachMessage(await errorText(response), true);
      return;
    }
    dropThumb(item);
    if (response.ok) {
      const body = await response.json();
      applyCounts(body.counts, body.without_hand);
    }
  });
  item.append(img, el("span", "label", label), remove);
  if (hand === false && label !== NO_HAND) {
    item.title = "No hand found: used for the image model only";
    item.append(el("span", "label", "no hand"));
  }
  $("teach-strip").prepend(item);
}

// A thumbnail made from a captured frame or a keyed download holds its image in a blob URL until revoked.
function dropThumb(item) {
  const src = item.querySelector("img")?.src || "";
  if (src.startsWith("blob:")) URL.revokeObjectURL(src);
  item.remove();
}

async function clearExamples() {
  const response = await api(teachApi("/examples"), { method: "DELETE" });
  if (!response.ok) {
    teachMessage(await errorText(response), true);
    return;
  }
  [...$("teach-strip").children].forEach(dropThumb);
  const body = await response.json();
  applyCounts(body.counts, body.without_hand);
  teachMessage("Every example deleted.");
}

async function train() {
  $("teach-verdict").textContent = "";
  $("teach-rollback").hidden = true;
  const response = await api(teachApi("/finetunes"), { method: "POST" });
  if (!response.ok) {
    teachMessage(await errorText(response), true);
    return;
  }
  followJob((await response.json()).id);
}

// Server-sent events, read with fetch: EventSource cannot send an API key. Like EventSource, a dropped
// stream is opened again a second later, until close().
function followEvents(url, onEvent) {
  const stop = new AbortController();
  const dispatch = (block) => {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length) onEvent(name, data.join("\n"));
  };
  (async () => {
    while (!stop.signal.aborted) {
      try {
        const response = await api(url, { signal: stop.signal, headers: { Accept: "text/event-stream" } });
        if (response.ok && response.body) {
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            const blocks = buffer.split(/\r?\n\r?\n/);
            buffer = blocks.pop();
            blocks.forEach(dispatch);
          }
        }
      } catch {
        // a dropped connection, or close(): the loop decides
      }
      if (!stop.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return { close: () => stop.abort() };
}

// The job's state after every change.
function followJob(id) {
  teach.job = id;
  $("teach-train").disabled = true;
  $("teach-cancel").hidden = false;
  $("teach-progress").hidden = false;
  teachMessage("Training a new version…");
  if (teach.events) teach.events.close();
  teach.events = followEvents(teachApi(`/finetunes/${id}/events`), (name, data) => {
    if (name === "job") showJob(JSON.parse(data));
  });
}

function showJob(job) {
  const progress = job.progress || {};
  $("teach-progress").value = progress.fraction || 0;
  $("teach-progress").dataset.phase = progress.phase || "";
  const history = job.history || [];
  const latest = typeof progress.holdout_accuracy === "number" ? progress : history[history.length - 1];
  if (latest) {
    $("teach-live").textContent = `Epoch ${latest.epoch}/${latest.epochs}: ${pct(latest.accuracy)} on the `
      + `training frames, ${pct(latest.holdout_accuracy)} on the frames held back`;
  } else if (progress.phase) {
    $("teach-live").textContent = `Step: ${progress.phase}`;
  }
  if (job.state === "running") return;
  if (teach.events) teach.events.close();
  teach.events = null;
  teach.job = null;
  $("teach-cancel").hidden = true;
  applyCounts(teach.counts);
  const verdict = $("teach-verdict");
  verdict.dataset.state = job.state;
  if (job.result && job.result.gate) {
    const g = job.result.gate;
    const before = `${pct(g.holdout_before)} → ${pct(g.holdout_after)} on your ${g.holdout_count} held-back frames`;
    let ref = `reference set ${pct(g.reference_before)} → ${pct(g.reference_after)}`;
    if (g.pose && typeof g.pose.holdout_after === "number") {
      ref += `; hand poses ${pct(g.pose.holdout_before)} → ${pct(g.pose.holdout_after)} on the `
        + `${g.pose.holdout_count} held-back frames with a hand`;
    }
    if (job.state === "succeeded") {
      verdict.textContent = `Version ${job.result.version} passed the gate (${before}; ${ref})`
        + (job.result.serving ? ` and now answers every request, the game included.` : ".");
      $("teach-rollback").hidden = false;
    } else {
      verdict.textContent = `Version ${job.result.version} was rejected and is not served: ${g.reason}.`;
    }
  } else {
    verdict.textContent = job.state === "cancelled" ? "Cancelled: no version was made."
      : `The job ${job.state}: ${job.error || "no detail"}`;
  }
  teachMessage("");
  loadModels();
}

async function cancelJob() {
  if (!teach.job) return;
  const response = await api(teachApi(`/finetunes/${teach.job}/cancel`), { method: "POST" });
  if (!response.ok) teachMessage(await errorText(response), true);
  else showJob(await response.json());
}

async function rollback() {
  const response = await api(teachApi("/rollback"), { method: "POST" });
  if (!response.ok) {
    teachMessage(await errorText(response), true);
    return;
  }
  const body = await response.json();
  $("teach-rollback").hidden = true;
  $("teach-verdict").textContent = `Version ${body.withdrawn} rolled back; serving version `
    + `${body.serving[body.serving.length - 1]} again.`;
  $("teach-verdict").dataset.state = "rolled-back";
  loadModels();
}

$("teach-camera-start").addEventListener("click", startTeachCamera);
$("teach-train").addEventListener("click", train);
$("teach-cancel").addEventListener("click", cancelJob);
$("teach-clear").addEventListener("click", clearExamples);
$("teach-rollback").addEventListener("click", rollback);
initTeach();
document.addEventListener("imgclf:key", initTeach);
