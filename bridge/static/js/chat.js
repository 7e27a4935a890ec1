// The chat about an analysed video: a question goes out on the session, the answer streams back
// in pieces (chat_response events) into one assistant message.
import { $, byId, el, find } from "./dom.js";
import { clock } from "./format.js";

/**
 * @typedef {import("../types/protocol").SessionData} SessionData
 * @typedef {import("./session.js").SessionSocket} SessionSocket
 */

export class ChatView {
  /**
   * @param {SessionSocket} session
   * @param {() => string | null} jobId the job questions are about, once there is one
   */
  constructor(session, jobId) {
    this.session = session;
    this.jobId = jobId;
    this.input = byId("chat-input", HTMLInputElement);
    this.sendButton = byId("chat-send", HTMLButtonElement);
    this.log = $("chat-log");
    /** @type {HTMLDivElement | null} the assistant message being streamed */
    this.bubble = null;
    byId("chat-form", HTMLFormElement).addEventListener("submit", (event) => { event.preventDefault(); this.ask(); });
  }

  /** An answer is on its way. */
  get busy() {
    return Boolean(this.bubble);
  }

  /**
   * @param {boolean} on
   * @param {string} hint
   */
  setEnabled(on, hint) {
    this.input.disabled = !on;
    this.sendButton.disabled = !on || this.busy;
    $("chat-hint").textContent = hint;
  }

  ask() {
    const question = this.input.value.trim();
    const jobId = this.jobId();
    if (!question || this.bubble || !jobId) return;
    this.input.value = "";
    $("chat-empty").hidden = true;
    const log = this.log;
    log.append(el("div", { class: "msg user", "data-testid": "chat-question", text: question }));
    const typing = el("span", { class: "typing", id: "typing-indicator", "data-testid": "typing-indicator", "aria-label": "The assistant is typing" }, el("i"), el("i"), el("i"));
    this.bubble = el("div", { class: "msg assistant", "data-testid": "chat-answer", "data-state": "typing", "aria-busy": "true" }, typing, el("span", { class: "text" }));
    log.append(this.bubble);
    log.scrollTop = log.scrollHeight;
    this.sendButton.disabled = true;
    this.session.send("chat", { question, job_id: jobId });
  }

  /** @param {SessionData} data a chat_response event */
  chunk(data) {
    const bubble = this.bubble;
    if (!bubble) return;
    const text = find(bubble, ".text", HTMLElement);
    const typing = bubble.querySelector(".typing");
    if (data.delta) {
      if (typing) typing.remove();
      bubble.dataset.state = "streaming";
      bubble.dataset.chunks = String(Number(bubble.dataset.chunks || 0) + 1);
      text.textContent += data.delta;
    }
    if (data.done) {
      if (typing) typing.remove();
      if (typeof data.text === "string" && data.text) text.textContent = data.text;
      const cited = data.cited_times || [];
      if (cited.length) {
        bubble.append(el("div", { class: "cites" }, ...cited.map((t) => el("span", { class: "chip", text: clock(t) }))));
      }
      this.end(bubble, "done");
    }
    this.log.scrollTop = this.log.scrollHeight;
  }

  /**
   * The answer being streamed failed: say why in its place.
   * @param {string} message
   */
  failed(message) {
    const bubble = this.bubble;
    if (!bubble) return;
    const typing = bubble.querySelector(".typing");
    if (typing) typing.remove();
    const text = find(bubble, ".text", HTMLElement);
    text.textContent = text.textContent ? `${text.textContent}\n\n${message}` : message;
    this.end(bubble, "error");
  }

  /**
   * @param {HTMLDivElement} bubble
   * @param {"done" | "error"} state
   */
  end(bubble, state) {
    bubble.dataset.state = state;
    bubble.removeAttribute("aria-busy");
    this.bubble = null;
    this.sendButton.disabled = this.input.disabled;
  }
}
