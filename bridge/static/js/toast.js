// Toasts: short notices in the corner, at most four, each dismissed by itself after a while.
import { $, el } from "./dom.js";

/** @typedef {"info" | "success" | "warning" | "error"} ToastKind */

/** @type {Record<ToastKind, number>} */
const TOAST_MS = { info: 5000, success: 5000, warning: 8000, error: 9000 };
/** @type {Map<string, number>} text -> time, so a burst of the same failure shows once */
const recentToasts = new Map();

/**
 * @param {ToastKind} kind
 * @param {string} title
 * @param {string} [message]
 */
export function toast(kind, title, message = "") {
  const key = `${kind}|${title}|${message}`;
  const now = Date.now();
  if (now - (recentToasts.get(key) || 0) < 3000) return;
  recentToasts.set(key, now);
  const close = el("button", { type: "button", "aria-label": "Dismiss", text: "×" });
  const node = el(
    "div",
    { class: "toast", "data-kind": kind, "data-testid": "toast", role: kind === "error" ? "alert" : "status" },
    el("div", { class: "body" }, el("strong", { text: title }), message ? el("span", { text: message }) : null),
    close,
  );
  const remove = () => {
    if (node.classList.contains("leaving")) return;
    node.classList.add("leaving");
    setTimeout(() => node.remove(), 200);
  };
  close.addEventListener("click", remove);
  setTimeout(remove, TOAST_MS[kind] || 5000);
  const box = $("toasts");
  box.append(node);
  while (box.children.length > 4) box.firstElementChild?.remove();
}
