// Toasts: short notices in the corner, at most four, each dismissed by itself after a while. An
// incident's toast also shows its snapshot and a button that opens it.
import { $, el } from "./dom.js";

/**
 * @typedef {"info" | "success" | "warning" | "error"} ToastKind
 * @typedef {{image?: string, imageAlt?: string, action?: {label: string, run: () => void}, ms?: number, testid?: string}} ToastExtras
 */

/** @type {Record<ToastKind, number>} */
const TOAST_MS = { info: 5000, success: 5000, warning: 8000, error: 9000 };
/** @type {Map<string, number>} text -> time, so a burst of the same failure shows once */
const recentToasts = new Map();

/**
 * @param {ToastKind} kind
 * @param {string} title
 * @param {string} [message]
 * @param {ToastExtras} [extras]
 */
export function toast(kind, title, message = "", extras = {}) {
  const key = `${kind}|${title}|${message}`;
  const now = Date.now();
  if (now - (recentToasts.get(key) || 0) < 3000) return;
  recentToasts.set(key, now);
  const close = el("button", { type: "button", "aria-label": "Dismiss", text: "×" });
  const remove = () => {
    if (node.classList.contains("leaving")) return;
    node.classList.add("leaving");
    setTimeout(() => node.remove(), 200);
  };
  const action = extras.action;
  const actionButton = action ? el("button", { type: "button", class: "toast-action", text: action.label }) : null;
  if (actionButton && action) actionButton.addEventListener("click", () => { action.run(); remove(); });
  const node = el(
    "div",
    { class: "toast", "data-kind": kind, "data-testid": extras.testid || "toast", role: kind === "error" ? "alert" : "status" },
    extras.image ? el("img", { class: "toast-image", src: extras.image, alt: extras.imageAlt || "" }) : null,
    el("div", { class: "body" }, el("strong", { text: title }), message ? el("span", { text: message }) : null, actionButton),
    close,
  );
  close.addEventListener("click", remove);
  setTimeout(remove, extras.ms || TOAST_MS[kind] || 5000);
  const box = $("toasts");
  box.append(node);
  while (box.children.length > 4) box.firstElementChild?.remove();
}
