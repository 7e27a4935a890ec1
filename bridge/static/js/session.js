// The analysis session's connection: /ws/session, {event, data} envelopes both ways.
import { wsUrl } from "./net.js";
import { MAX_RECONNECTS, retryDelay } from "./reconnect.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").SessionData} SessionData
 * @typedef {import("../types/protocol").SessionMessage} SessionMessage
 * @typedef {"connecting" | "connected" | "lost" | "idle"} SessionState
 * @typedef {{session_id: string}} Join
 */

export class SessionSocket {
  // One /ws/session connection that rejoins its session (from the last sequence seen, so no
  // event arrives twice) when the connection drops, with the page's reconnect policy.
  /**
   * @param {(event: string, data: SessionData) => void} onEvent
   * @param {(state: SessionState) => void} onState
   */
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {Join | null} the join_session data to (re)send */
    this.join = null;
    this.lastSequence = 0;
    this.attempts = 0;
    /** @type {string[]} messages sent while connecting */
    this.queue = [];
    this.closedByUs = false;
    /** @type {number | undefined} */
    this.retryTimer = undefined;
  }

  /** @param {Join} join */
  open(join) {
    this.join = join;
    this.lastSequence = 0;
    this.attempts = 0;
    this.closedByUs = false;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.send("join_session", { ...join, after_sequence: 0 });
      return;
    }
    this.connect();
  }

  connect() {
    // A retry still waiting would otherwise close this connection when its time comes.
    clearTimeout(this.retryTimer);
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.close(1000);
    }
    this.onState("connecting");
    const socket = new WebSocket(wsUrl("/ws/session"));
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.onState("connected");
      if (this.join) socket.send(JSON.stringify({ event: "join_session", data: { ...this.join, after_sequence: this.lastSequence } }));
      for (const message of this.queue.splice(0)) socket.send(message);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      /** @type {SessionMessage | null} */
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (!message || typeof message.event !== "string") return;
      const data = message.data || {};
      if (typeof data.sequence === "number") {
        if (data.sequence <= this.lastSequence) return;
        this.lastSequence = data.sequence;
      }
      if (message.event === "session_joined") this.attempts = 0;
      this.onEvent(message.event, data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedByUs || !this.join) { this.onState("idle"); return; }
      if (event.code === 1008 || this.attempts >= MAX_RECONNECTS) {
        this.onState("lost");
        toast("error", "Session connection lost", event.reason || "The bridge cannot be reached; upload again to retry.");
        return;
      }
      const delay = retryDelay(this.attempts);
      this.attempts += 1;
      this.onState("connecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  /**
   * @param {string} event
   * @param {Record<string, unknown>} data
   */
  send(event, data) {
    const message = JSON.stringify({ event, data });
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(message);
    else {
      this.queue.push(message);
      if (!this.socket) this.connect();
    }
  }
}
