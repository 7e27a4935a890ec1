// Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs); the URL's #fragment names the open
// one, so a reload or a shared link opens the same view.
import { $ } from "./dom.js";

/** @type {Record<string, number | undefined>} */
const STEPS = { ArrowRight: 1, ArrowLeft: -1 };

/** Open a view by its name ("live", "cameras", ...), as a click on its tab would. @param {string} name */
export function showTab(name) {
  $(`tab-${name}`).click();
}

export function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')].filter((t) => t instanceof HTMLElement);
  /** @param {HTMLElement} tab */
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      const panel = $(t.getAttribute("aria-controls") ?? "");
      const shown = on && panel.hidden;
      panel.hidden = !on;
      // Views that load only while on screen (the timeline) are told when they come into view.
      if (shown) panel.dispatchEvent(new Event("show"));
    }
    if (location.hash !== `#${tab.id.slice(4)}`) history.replaceState(null, "", `#${tab.id.slice(4)}`);
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = STEPS[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });
  const initial = tabs.find((t) => `#${t.id.slice(4)}` === location.hash);
  if (initial) select(initial);
}
