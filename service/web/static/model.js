// imgclf page, "Model" tab: versions, labels, the serving version's model card.

import { $, api, el, errorText, pct, state } from "./common.js";

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
    const runtime = el("td", "", v.runtime || "–");
    runtime.dataset.testid = "version-runtime";
    if (v.runtime_note) runtime.title = v.runtime_note;
    row.append(el("td", "", `v${v.version}`), stateCell, labels, el("td", "", v.labels.join(", ") || "–"),
      el("td", "", accuracy), runtime, el("td", "", created));
    // each cell names its column, for the stacked layout on narrow screens
    const headers = document.querySelectorAll(".versions thead th");
    row.querySelectorAll("td").forEach((cell, i) => { cell.dataset.col = headers[i].textContent; });
    if (v.error) {
      const note = el("tr", "error-row");
      const cell = el("td", "error", v.error);
      cell.colSpan = 7;
      note.append(cell);
      return [row, note];
    }
    return [row];
  });
  $("versions-body").replaceChildren(...rows.flat());
}

// fp32 and int8 top-1 per measured set, from the card's int8 entry.
function int8Summary(int8) {
  if (!int8 || !int8.fp32_accuracy) return null;
  return Object.keys(int8.fp32_accuracy).map((set) =>
    `${set}: fp32 ${pct(int8.fp32_accuracy[set])}, int8 ${pct(int8.int8_accuracy[set])}`).join("; ");
}

// The pose classifier's figures (the card's "pose" entry): the known ones in words, any other as it is named.
const POSE_KNOWN = ["held_out_by_hand_accuracy", "hand_found_rate", "pictures", "hands"];

function poseSummary(pose) {
  if (!pose || typeof pose !== "object") return null;
  const number = (key) => (typeof pose[key] === "number" ? pose[key] : null);
  const parts = [];
  if (number("held_out_by_hand_accuracy") !== null) {
    parts.push(`${pct(pose.held_out_by_hand_accuracy)} on hands it never saw (held out by hand)`);
  }
  if (number("hand_found_rate") !== null) parts.push(`a hand found in ${pct(pose.hand_found_rate)} of pictures`);
  if (number("pictures") !== null || number("hands") !== null) {
    parts.push([number("pictures") !== null && `${pose.pictures.toLocaleString("en")} pictures`,
      number("hands") !== null && `${pose.hands} hands`].filter(Boolean).join(" of "));
  }
  for (const [key, value] of Object.entries(pose)) {
    if (POSE_KNOWN.includes(key) || !["number", "string", "boolean"].includes(typeof value)) continue;
    const shown = typeof value === "number" && /(_accuracy|_rate)$/.test(key) ? pct(value) : String(value);
    parts.push(`${key.replace(/_/g, " ")}: ${shown}`);
  }
  return parts.join("; ") || null;
}

// What the serving version learned from and how well it does, from its model card.
function fillModelCard(models) {
  const serving = models.versions.find((v) => v.version === models.default_version);
  const box = $("model-card");
  if (!serving) {
    box.hidden = true;
    return;
  }
  $("card-title").textContent = `Serving version: v${serving.version}`;
  const facts = [
    ["Trained on", serving.trained_on],
    ["Recipe", serving.recipe && `${serving.recipe}${serving.arch ? ` (${serving.arch} network)` : ""}`],
    ["Classes", serving.labels.join(", ")],
    typeof serving.val_accuracy === "number"
      ? ["Accuracy", `${pct(serving.val_accuracy)}${serving.validation ? ` on ${serving.validation}` : ""}`]
      : ["Validation", serving.validation],
    typeof serving.reallike_accuracy === "number"
      ? ["Real-like check", `${pct(serving.reallike_accuracy)} (unseen hands in unseen scenes, webcam-sized)`]
      : ["Real-like check", typeof serving.reallike_seen_hands_accuracy === "number"
        ? `${pct(serving.reallike_seen_hands_accuracy)} (hands it trained on, in unseen scenes, webcam-sized)` : null],
    ["Runtime", serving.runtime && `${serving.runtime}${serving.runtime_note ? ` (${serving.runtime_note})` : ""}`],
    ["Int8 model", int8Summary(serving.int8)],
    ["Pose classifier", poseSummary(serving.pose)],
    ["Provenance", serving.provenance],
  ].filter(([, value]) => value);
  $("card-facts").replaceChildren(...facts.flatMap(([name, value]) => {
    const dd = el("dd", "", value);
    dd.dataset.testid = `card-${name.toLowerCase().replace(/[^a-z]+/g, "-")}`;
    return [el("dt", "", name), dd];
  }));
  box.hidden = false;
}

// The version list, the status pill and the card; again on the Model tab, after a key, after training.
export async function loadModels() {
  const status = $("model-status");
  try {
    const response = await api("/models");
    if (!response.ok) throw new Error(await errorText(response));
    const models = await response.json();
    state.handStage = Object.fromEntries(models.versions.map((v) => [v.version, Boolean(v.hand_stage)]));
    fillSelect(models);
    fillTable(models);
    fillModelCard(models);
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
document.addEventListener("imgclf:key", loadModels);

loadModels();
