// Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs); the URL's #fragment names the open
// one, so a reload or a shared link opens the same view.
import { $ } from "./dom.js";

/** @type {Record<string, number | undefined>} */
const STEPS = { ArrowRight: 1, ArrowLeft: -1 };

export function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')].filter((t) => t instanceof HTMLElement);
  /** @param {HTMLElement} tab */
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls") ?? "").hidden = !on;
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
