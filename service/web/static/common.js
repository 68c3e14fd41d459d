// imgclf page, shared by every tab: state, helpers, the API call, the tab bar. Loaded first.
"use strict";

const MOVES = ["rock", "paper", "scissors"];
const NO_HAND = "none"; // the label of models that can say no hand is in view
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

// A server run with IMGCLF_API_KEYS answers 401 without a key. The page then asks for one and keeps it
// for this tab only (sessionStorage: gone when the tab closes), and sends it with every call.
const KEY_STORE = "imgclf-api-key";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    return ""; // storage blocked: the key lives until the page reloads
  }
}

let pageKey = apiKey();

// Every call to the server's API goes through here.
async function api(url, init = {}) {
  const headers = new Headers(init.headers || {});
  if (pageKey) headers.set("X-API-Key", pageKey);
  const response = await fetch(url, { ...init, headers });
  if (response.status === 401) askForKey(Boolean(pageKey));
  return response;
}

function askForKey(refused) {
  $("key-label").textContent = refused
    ? "The server refused this API key: enter another."
    : "This server needs an API key.";
  $("key-form").hidden = false;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  pageKey = $("key-input").value.trim();
  try {
    sessionStorage.setItem(KEY_STORE, pageKey);
  } catch {
    // storage blocked: pageKey alone carries it
  }
  $("key-input").value = "";
  $("key-form").hidden = true;
  document.dispatchEvent(new Event("imgclf:key")); // each tab reloads what the 401 stopped
});

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
    response = await api(predictUrl(), { method: "POST", body: form });
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
    const shown = tabs.filter((t) => !t.hidden); // the Teach tab only when the server has it on
    const i = shown.indexOf(tab);
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: shown.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    selectTab(shown[(next + shown.length) % shown.length], true);
  });
}

