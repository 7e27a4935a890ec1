// The live view: one camera's frames, painted on a canvas as they come, with its statistics.
//   /ws/video-stream/{source}?format=binary  4-byte big-endian header length N, N bytes of JSON
//                                            header {type, timestamp, sequence, ...}, then JPEG;
//                                            errors as JSON text {type: "error", code, message}
import { $, byId, el, find } from "./dom.js";
import { wsUrl } from "./net.js";
import { MAX_RECONNECTS, retryDelay } from "./reconnect.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").FrameHeader} FrameHeader
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("./sources.js").SourceStore} SourceStore
 * @typedef {import("../types/protocol").StreamError} StreamError
 * @typedef {import("../types/protocol").StreamMessage} StreamMessage
 * @typedef {"connected" | "connecting" | "disconnected"} LiveState
 */

const FINAL_CLOSE_CODES = new Set([1008, 1009]); // unknown source, refused: retrying cannot help

export class LiveView {
  /** @param {SourceStore} store */
  constructor(store) {
    this.store = store;
    /** @type {(width: number, height: number) => void} told when the frames' size changes */
    this.onSize = () => {};
    this.canvas = byId("live-canvas", HTMLCanvasElement);
    const ctx = this.canvas.getContext("2d", { alpha: false });
    if (!ctx) throw new Error("this browser cannot draw on a canvas");
    this.ctx = ctx;
    this.button = byId("start-button", HTMLButtonElement);
    this.select = byId("source-select", HTMLSelectElement);
    // Shown for a camera that names a main stream: its frames at full size instead of the
    // detection stream's (the boxes are the detection stream's, scaled).
    this.fullSize = byId("full-size", HTMLButtonElement);
    /** @type {Source[]} */
    this.sources = [];
    /** @type {WebSocket | null} */
    this.socket = null;
    this.wanted = false;
    this.attempts = 0;
    /** @type {number | undefined} */
    this.retryTimer = undefined;
    /** @type {{header: FrameHeader, blob: Blob, socket: WebSocket | null} | null} newest undrawn frame */
    this.pending = null;
    this.decoding = false;
    this.frames = 0;
    /** @type {number[]} */
    this.paintTimes = [];
    /** @type {StreamError | null} */
    this.lastError = null;
    this.interrupted = false; // a connection dropped and frames have not come back yet
    this.button.addEventListener("click", () => (this.wanted ? this.stop() : this.start()));
    $("sources-refresh").addEventListener("click", () => this.loadSources(true));
    this.select.addEventListener("change", () => {
      this.showFullSize();
      if (this.wanted) this.restart();
    });
    this.fullSize.addEventListener("click", () => {
      const on = this.fullSize.getAttribute("aria-pressed") !== "true";
      this.fullSize.setAttribute("aria-pressed", String(on));
      if (this.wanted) this.restart();
    });
    store.subscribe((sources) => this.renderSources(sources));
    setInterval(() => this.tick(), 500);
    this.loadSources(false);
  }

  /** @param {boolean} announce */
  async loadSources(announce) {
    try {
      const sources = await this.store.refresh();
      if (announce) toast("info", "Sources refreshed", `${sources.length} source${sources.length === 1 ? "" : "s"} available.`);
    } catch (error) {
      toast("warning", "Could not list the camera sources", error instanceof Error && error.message ? error.message : String(error));
    }
  }

  /** @param {Source[]} sources */
  renderSources(sources) {
    const current = this.select.value;
    this.select.replaceChildren(el("option", { value: "", text: "Default source" }));
    for (const source of sources) {
      const spec = source.spec;
      const name = spec.display_name ? `${spec.display_name} (${spec.id})` : spec.id;
      this.select.append(el("option", { value: spec.id, text: `${name} · ${source.state}` }));
    }
    if ([...this.select.options].some((o) => o.value === current)) this.select.value = current;
    this.sources = sources;
    this.showFullSize();
  }

  /** The "Full size" toggle, for a source with a main stream (its record_uri, masked). */
  showFullSize() {
    const source = this.sources.find((s) => s.spec.id === this.select.value);
    const has = Boolean(source && source.spec.record_uri);
    this.fullSize.hidden = !has;
    // Off for a camera without one (a stream asked for it meanwhile gets the usual frames).
    if (!has) this.fullSize.setAttribute("aria-pressed", "false");
  }

  /** Whether the main stream is asked for (the toggle is on and shown). */
  get mainStream() {
    return !this.fullSize.hidden && this.fullSize.getAttribute("aria-pressed") === "true";
  }

  /**
   * Show one source's full stream (a tile of the grid was opened).
   * @param {string} sourceId
   */
  watch(sourceId) {
    if (![...this.select.options].some((o) => o.value === sourceId)) {
      this.select.append(el("option", { value: sourceId, text: sourceId }));
    }
    if (this.select.value !== sourceId) {
      this.select.value = sourceId;
      // As if picked in the list: a running stream moves to it, the zone editor follows.
      this.select.dispatchEvent(new Event("change"));
    }
    if (!this.wanted) this.start();
  }

  /**
   * @param {LiveState} state
   * @param {string} text
   */
  setStatus(state, text) {
    for (const id of ["connection-dot", "header-dot"]) $(id).dataset.state = state;
    $("connection-status").textContent = text;
    $("header-status").textContent = state === "connected" ? "Live: on" : state === "connecting" ? "Live: connecting" : "Live: off";
    // While (re)connecting the empty stage says so, not "press Start" under a Stop button.
    $("placeholder-idle").hidden = state !== "disconnected";
    $("placeholder-waiting").hidden = state === "disconnected";
  }

  start() {
    this.wanted = true;
    this.attempts = 0;
    this.lastError = null;
    this.interrupted = false;
    this.button.classList.add("stop");
    this.button.setAttribute("aria-pressed", "true");
    find(this.button, ".label", HTMLElement).textContent = "Stop";
    find(this.button, "svg", SVGSVGElement).innerHTML = '<rect x="6" y="6" width="12" height="12" rx="1"/>';
    this.connect();
  }

  /** @param {string} [reason] */
  stop(reason) {
    this.wanted = false;
    this.interrupted = false;
    clearTimeout(this.retryTimer);
    this.button.classList.remove("stop");
    this.button.setAttribute("aria-pressed", "false");
    find(this.button, ".label", HTMLElement).textContent = "Start AI Detection";
    find(this.button, "svg", SVGSVGElement).innerHTML = '<path d="M8 5v14l11-7z"/>';
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000);
    }
    this.pending = null;
    this.paintTimes = [];
    $("stage").dataset.live = "false";
    this.setStatus("disconnected", reason || "Disconnected");
  }

  restart() {
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000);
    }
    this.attempts = 0;
    $("stage").dataset.live = "false";
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    const source = this.select.value;
    const path = source ? `/ws/video-stream/${encodeURIComponent(source)}` : "/ws/video-stream";
    this.setStatus("connecting", this.attempts ? `Reconnecting: retry ${this.attempts}/${MAX_RECONNECTS}…` : "Connecting…");
    /** @type {Record<string, string>} */
    const params = { format: "binary", extras: "sequence,dropped,latency" };
    if (this.mainStream) params.main = "1";
    const socket = new WebSocket(wsUrl(path, params));
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket === socket) this.setStatus("connected", "Connected · waiting for frames");
    };
    socket.onmessage = (event) => {
      if (this.socket === socket) this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.closed(event);
    };
  }

  /** @param {CloseEvent} event */
  closed(event) {
    if (!this.wanted) return;
    this.pending = null;
    $("stage").dataset.live = "false";
    if (FINAL_CLOSE_CODES.has(event.code) || this.attempts >= MAX_RECONNECTS) {
      const why = event.reason || (this.lastError && this.lastError.message) || "The bridge cannot be reached.";
      const title = this.attempts >= MAX_RECONNECTS ? "Live stream lost" : "Live stream refused";
      toast("error", title, why);
      this.stop(`Disconnected: ${why}`);
      return;
    }
    const delay = retryDelay(this.attempts);
    if (this.attempts === 0) {
      this.interrupted = true;
      toast("warning", "Live stream interrupted", `Reconnecting: up to ${MAX_RECONNECTS} tries.`);
    }
    this.attempts += 1;
    const seconds = Number((delay / 1000).toFixed(1));
    this.setStatus("connecting", `Connection lost; retry ${this.attempts}/${MAX_RECONNECTS} in ${seconds} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** @param {string | ArrayBuffer} data */
  receive(data) {
    if (typeof data === "string") {
      /** @type {StreamMessage} */
      let message;
      try { message = JSON.parse(data); } catch { return; } // unreadable: skip silently
      if (message.type === "error") {
        this.lastError = message;
        this.setStatus("connecting", `${message.message}`);
        toast("error", "Live stream problem", `${message.message} (${message.code})`);
      } else if (message.type === "frame" && typeof message.data === "string") {
        // The JSON format, should a proxy hand us one: base64 JPEG.
        try {
          const bytes = Uint8Array.from(atob(message.data), (c) => c.charCodeAt(0));
          this.queue(message, new Blob([bytes], { type: "image/jpeg" }));
        } catch { /* corrupt frame: skip */ }
      }
      return;
    }
    try {
      const view = new DataView(data);
      const length = view.getUint32(0);
      /** @type {StreamMessage} */
      const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, length)));
      if (header.type !== "frame") return;
      this.queue(header, new Blob([new Uint8Array(data, 4 + length)], { type: "image/jpeg" }));
    } catch { /* corrupt message: skip silently */ }
  }

  /**
   * Newest frame wins: while one decodes, later ones replace each other in `pending`.
   * @param {FrameHeader} header
   * @param {Blob} blob
   */
  queue(header, blob) {
    this.attempts = 0;
    this.lastError = null;
    this.pending = { header, blob, socket: this.socket };
    if (!this.decoding) this.paint();
  }

  async paint() {
    this.decoding = true;
    while (this.pending) {
      const { header, blob, socket } = this.pending;
      this.pending = null;
      let bitmap;
      try {
        bitmap = await createImageBitmap(blob);
      } catch {
        continue; // a frame that does not decode is skipped silently
      }
      // The connection it came on closed while it decoded: painting it now would show the
      // stream as live (green dot, "restored") while the page is still reconnecting.
      if (!this.wanted || socket !== this.socket) { bitmap.close(); continue; }
      if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
        this.canvas.width = bitmap.width;
        this.canvas.height = bitmap.height;
        this.onSize(bitmap.width, bitmap.height);
      }
      this.ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      this.painted(header);
    }
    this.decoding = false;
  }

  /** @param {FrameHeader} header */
  painted(header) {
    this.frames += 1;
    this.paintTimes.push(performance.now());
    if (this.frames === 1 || $("stage").dataset.live !== "true") {
      $("stage").dataset.live = "true";
      this.setStatus("connected", "Connected · live");
    }
    if (this.interrupted) {
      this.interrupted = false;
      toast("success", "Live stream restored", "Frames are arriving again.");
    }
    const count = $("frame-count");
    count.textContent = String(this.frames);
    count.dataset.count = String(this.frames);
    const latency = Date.now() - header.timestamp * 1000;
    $("stat-latency").textContent = Number.isFinite(latency) ? `${Math.max(0, Math.round(latency))} ms` : "–";
    if (typeof header.dropped === "number") $("stat-dropped").textContent = String(header.dropped);
  }

  // Frames painted per second over the last two seconds.
  tick() {
    const now = performance.now();
    const times = this.paintTimes;
    while (times.length && now - times[0] > 2000) times.shift();
    const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
    const fps = span > 0 ? (times.length - 1) / span : 0;
    $("stat-fps").textContent = fps.toFixed(1);
  }
}
