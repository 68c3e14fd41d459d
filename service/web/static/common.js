// imgclf page, shared by every tab: helpers, the API call and the choice of version it applies to.

export const NO_HAND = "none"; // the label of models that can say no hand is in view

export const $ = (id) => document.getElementById(id);
export const state = {
  target: "", // "" (latest), "label:NAME" or "version:N": applies to every request
  handStage: {}, // version -> whether the hand stage reads its pictures (GET /models), see hand.js
};

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export const pct = (p) => `${(p * 100).toFixed(1)}%`;
export const title = (s) => s.charAt(0).toUpperCase() + s.slice(1);

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

// Whether calls carry a key: then a plain URL (an <img>'s) is refused and the page fetches through api().
export const hasApiKey = () => Boolean(pageKey);

// Every call to the server's API goes through here.
export async function api(url, init = {}) {
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

export async function errorText(response) {
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
export async function classify(blob, filename) {
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
