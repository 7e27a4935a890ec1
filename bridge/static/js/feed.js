// The live feed of incidents and source events: /ws/incidents (bridge/incident_feed.py), one JSON
// text message each. A background service of the page, so unlike the live view it never gives up:
// after a dropped connection it tries again with the page's backoff (1 s, 2 s, 4 s, ...), capped
// at MAX_DELAY_MS. Whatever happened while it was away is told as a gap: listeners reload their
// lists from the REST API.
import { wsUrl } from "./net.js";
import { retryDelay } from "./reconnect.js";

/**
 * @typedef {import("../types/protocol").FeedMessage} FeedMessage
 * @typedef {"connecting" | "connected" | "reconnecting"} FeedState
 */

const MAX_DELAY_MS = 30_000;

export class Feed {
  constructor() {
    /** @type {((message: FeedMessage) => void)[]} */
    this.listeners = [];
    /** @type {((state: FeedState) => void)[]} */
    this.stateListeners = [];
    /** @type {FeedState} */
    this.state = "connecting";
    this.attempts = 0;
    this.everConnected = false;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.connect();
  }

  /** @param {(message: FeedMessage) => void} listener */
  onMessage(listener) { this.listeners.push(listener); }

  /** @param {(state: FeedState) => void} listener */
  onState(listener) { this.stateListeners.push(listener); listener(this.state); }

  /** @param {FeedState} state */
  setState(state) {
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  /** @param {FeedMessage} message */
  emit(message) {
    for (const listener of this.listeners) listener(message);
  }

  connect() {
    const socket = new WebSocket(wsUrl("/ws/incidents"));
    this.socket = socket;
    socket.onopen = () => {
      this.attempts = 0;
      this.setState("connected");
      // Anything may have happened while we were away.
      if (this.everConnected) this.emit({ type: "gap", dropped: 0 });
      this.everConnected = true;
    };
    socket.onmessage = (event) => {
      /** @type {FeedMessage} */
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message && typeof message.type === "string") this.emit(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.setState("reconnecting");
      const delay = Math.min(retryDelay(this.attempts), MAX_DELAY_MS);
      this.attempts += 1;
      setTimeout(() => this.connect(), delay);
    };
  }
}
