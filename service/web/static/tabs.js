// imgclf page, the tab bar: a click or the arrow keys show one section; Model reloads the version list.

import { $ } from "./common.js";
import { loadModels } from "./model.js";

const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

export function selectTab(tab, focus) {
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
