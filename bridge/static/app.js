// Vigil's page: a live view of the detector's cameras and an analysis session for uploaded
// videos. Plain ES module, no build step. The protocols are the bridge's (see bridge/app.py):
//   /ws/video-stream/{source}?format=binary  4-byte big-endian header length N, N bytes of JSON
//                                            header {type, timestamp, sequence, ...}, then JPEG;
//                                            errors as JSON text {type: "error", code, message}
//   /ws/session                              {event, data} envelopes both ways
//   POST /api/videos?name=&analyze=true&session_id=   the raw file as the body
"use strict";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

// An optional bearer token: open the page once as /?token=..., it is kept for the tab's life.
const TOKEN = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem("vigil-token", given);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }
  return given || sessionStorage.getItem("vigil-token") || "";
})();

function authHeaders() {
  return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
}

function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  if (TOKEN) url.searchParams.set("token", TOKEN);
  return url.toString();
}

// Seconds as mm:ss (minutes keep counting past 59, as the analyzer's [mm:ss] citations do).
export function clock(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const minutes = Math.floor(total / 60);
  return `${String(minutes).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.message) return body.code ? `${body.message} (${body.code})` : body.message;
    if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText}`.trim();
}

// ---------------------------------------------------------------------------------------------
// Toasts
// ---------------------------------------------------------------------------------------------

const TOAST_MS = { info: 5000, success: 5000, warning: 8000, error: 9000 };
const recentToasts = new Map(); // text -> time, so a burst of the same failure shows once

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
  while (box.children.length > 4) box.firstElementChild.remove();
}

// ---------------------------------------------------------------------------------------------
// Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs)
// ---------------------------------------------------------------------------------------------

function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (location.hash !== `#${tab.id.slice(4)}`) history.replaceState(null, "", `#${tab.id.slice(4)}`);
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });
  const initial = tabs.find((t) => `#${t.id.slice(4)}` === location.hash);
  if (initial) select(initial);
}

// ---------------------------------------------------------------------------------------------
// Live view
// ---------------------------------------------------------------------------------------------

// After a dropped connection: this many tries, the first after FIRST_RETRY_MS and each next one
// after twice as long (1 s, 2 s, 4 s), then the user presses Start again. The bridge serves its
// policy (VIGIL_BRIDGE_RECONNECT_*) on <body>; these defaults are the same as its own.
function policyNumber(name, fallback, min) {
  const value = Number(document.body.dataset[name]);
  return Number.isFinite(value) && value >= min ? value : fallback;
}
const MAX_RECONNECTS = Math.floor(policyNumber("reconnectTries", 3, 0));
const FIRST_RETRY_MS = policyNumber("reconnectInitialMs", 1000, 1);
const FINAL_CLOSE_CODES = new Set([1008, 1009]); // unknown source, refused: retrying cannot help

class LiveView {
  constructor() {
    this.canvas = $("live-canvas");
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.button = $("start-button");
    this.select = $("source-select");
    this.socket = null;
    this.wanted = false;
    this.attempts = 0;
    this.retryTimer = null;
    this.pending = null;     // newest undrawn frame: {header, blob, socket}
    this.decoding = false;
    this.frames = 0;
    this.paintTimes = [];
    this.lastError = null;
    this.interrupted = false; // a connection dropped and frames have not come back yet
    this.button.addEventListener("click", () => (this.wanted ? this.stop() : this.start()));
    $("sources-refresh").addEventListener("click", () => this.loadSources(true));
    this.select.addEventListener("change", () => { if (this.wanted) this.restart(); });
    setInterval(() => this.tick(), 500);
    this.loadSources(false);
  }

  async loadSources(announce) {
    try {
      const response = await fetch("/api/sources", { headers: authHeaders() });
      if (!response.ok) throw new Error(await errorText(response));
      const { sources } = await response.json();
      const current = this.select.value;
      this.select.replaceChildren(el("option", { value: "", text: "Default source" }));
      for (const source of sources) {
        const spec = source.spec;
        const name = spec.display_name ? `${spec.display_name} (${spec.id})` : spec.id;
        this.select.append(el("option", { value: spec.id, text: `${name} · ${source.state}` }));
      }
      if ([...this.select.options].some((o) => o.value === current)) this.select.value = current;
      if (announce) toast("info", "Sources refreshed", `${sources.length} source${sources.length === 1 ? "" : "s"} available.`);
    } catch (error) {
      toast("warning", "Could not list the camera sources", String(error.message || error));
    }
  }

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
    this.button.querySelector(".label").textContent = "Stop";
    this.button.querySelector("svg").innerHTML = '<rect x="6" y="6" width="12" height="12" rx="1"/>';
    this.connect();
  }

  stop(reason) {
    this.wanted = false;
    this.interrupted = false;
    clearTimeout(this.retryTimer);
    this.button.classList.remove("stop");
    this.button.setAttribute("aria-pressed", "false");
    this.button.querySelector(".label").textContent = "Start AI Detection";
    this.button.querySelector("svg").innerHTML = '<path d="M8 5v14l11-7z"/>';
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
    const socket = new WebSocket(wsUrl(path, { format: "binary", extras: "sequence,dropped,latency" }));
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
    const delay = FIRST_RETRY_MS * 2 ** this.attempts;
    if (this.attempts === 0) {
      this.interrupted = true;
      toast("warning", "Live stream interrupted", `Reconnecting: up to ${MAX_RECONNECTS} tries.`);
    }
    this.attempts += 1;
    const seconds = Number((delay / 1000).toFixed(1));
    this.setStatus("connecting", `Connection lost; retry ${this.attempts}/${MAX_RECONNECTS} in ${seconds} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  receive(data) {
    if (typeof data === "string") {
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
      const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, length)));
      if (header.type !== "frame") return;
      this.queue(header, new Blob([new Uint8Array(data, 4 + length)], { type: "image/jpeg" }));
    } catch { /* corrupt message: skip silently */ }
  }

  // Newest frame wins: while one decodes, later ones replace each other in `pending`.
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
      }
      this.ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      this.painted(header);
    }
    this.decoding = false;
  }

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

// ---------------------------------------------------------------------------------------------
// Analysis session: /ws/session events
// ---------------------------------------------------------------------------------------------

const STAGE_NAMES = {
  queued: "Queued",
  initialization: "Initialising",
  frame_extraction: "Extracting frames",
  detection: "Detecting objects",
  ai_inference: "AI inference",
  complete: "Complete",
  failed: "Failed",
  unspecified: "Working",
};

class SessionSocket {
  // One /ws/session connection that rejoins its session (from the last sequence seen, so no
  // event arrives twice) when the connection drops: 3 attempts with exponential backoff.
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.socket = null;
    this.join = null;        // the join_session data to (re)send
    this.lastSequence = 0;
    this.attempts = 0;
    this.queue = [];         // messages sent while connecting
    this.closedByUs = false;
    this.retryTimer = null;
  }

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
      const delay = FIRST_RETRY_MS * 2 ** this.attempts;
      this.attempts += 1;
      this.onState("connecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    };
  }

  send(event, data) {
    const message = JSON.stringify({ event, data });
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(message);
    else {
      this.queue.push(message);
      if (!this.socket) this.connect();
    }
  }
}

class AnalysisView {
  constructor() {
    this.form = $("upload-form");
    this.file = $("video-file");
    this.uploadButton = $("upload-button");
    this.progress = $("analysis-progress");
    this.session = new SessionSocket((event, data) => this.onEvent(event, data), (state) => this.onSessionState(state));
    this.sessionId = null;
    this.jobId = null;
    this.finished = false;
    this.chatBubble = null;  // the assistant message being streamed
    this.upload = null;
    this.file.addEventListener("change", () => { this.uploadButton.disabled = !this.file.files.length; });
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.startUpload(); });
    $("chat-form").addEventListener("submit", (event) => { event.preventDefault(); this.ask(); });
  }

  onSessionState(state) {
    const text = { connecting: "connecting…", connected: "connected", lost: "disconnected", idle: "idle" }[state];
    $("session-status").textContent = `Session: ${text}`;
  }

  reset() {
    this.finished = false;
    this.jobId = null;
    $("analysis-card").hidden = false;
    $("result").hidden = true;
    $("long-video-notice").hidden = true;
    $("analysis-error").hidden = true;
    $("thinking").hidden = true;
    $("stage-message").textContent = "";
    this.setProgress(0, "queued", "Waiting for the upload…");
    this.setChatEnabled(false, "Waiting for the analysis to start…");
  }

  startUpload() {
    const file = this.file.files[0];
    if (!file || this.upload) return;
    this.reset();
    this.sessionId = crypto.randomUUID ? crypto.randomUUID() : `s-${Date.now()}-${Math.random().toString(16).slice(2)}`;
    // The seed's flow: join the session first, then upload; the bridge binds the job to it.
    this.session.open({ session_id: this.sessionId });
    const url = `/api/videos?${new URLSearchParams({ name: file.name, analyze: "true", session_id: this.sessionId })}`;
    const xhr = new XMLHttpRequest();
    this.upload = xhr;
    xhr.open("POST", url);
    for (const [key, value] of Object.entries(authHeaders())) xhr.setRequestHeader(key, value);
    xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
    $("upload-meter").hidden = false;
    this.setUpload(0, `Uploading ${file.name}…`);
    this.uploadButton.disabled = true;
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) this.setUpload((100 * event.loaded) / event.total, `Uploading ${file.name}…`);
    };
    xhr.onload = () => {
      this.upload = null;
      this.uploadButton.disabled = !this.file.files.length;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        this.setUpload(100, `Uploaded ${file.name}`);
        if (body.job) {
          this.jobId = body.job.id;
          this.setChatEnabled(true, "Ask anything about the video.");
        }
        const video = body.video || {};
        toast("success", "Upload complete", `${file.name}: ${clock(video.duration_s)} long, ${video.width}×${video.height}.`);
      } else {
        const why = body && body.message ? `${body.message}${body.code ? ` (${body.code})` : ""}` : `HTTP ${xhr.status}`;
        this.failUpload(why);
      }
    };
    xhr.onerror = () => { this.upload = null; this.uploadButton.disabled = false; this.failUpload("The bridge cannot be reached."); };
    xhr.onabort = () => { this.upload = null; this.uploadButton.disabled = false; this.failUpload("The upload was cancelled."); };
    xhr.send(file);
  }

  failUpload(why) {
    this.setUpload(0, "Upload failed");
    $("upload-progress").dataset.state = "failed";
    this.showError(`Upload failed: ${why}`);
    toast("error", "Upload failed", why);
    this.session.closedByUs = true;
  }

  setUpload(percent, label) {
    const bar = $("upload-progress");
    const value = Math.round(percent);
    bar.setAttribute("aria-valuenow", String(value));
    bar.dataset.percent = String(value);
    delete bar.dataset.state;
    bar.querySelector(".fill").style.width = `${percent}%`;
    $("upload-percent-text").textContent = `${value}%`;
    $("upload-label").textContent = label;
  }

  setProgress(percent, stage, label) {
    const bar = this.progress;
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    bar.dataset.stage = stage;
    bar.dataset.percent = String(value);
    bar.dataset.active = String(value < 100 && stage !== "failed");
    bar.setAttribute("aria-valuenow", String(value));
    bar.setAttribute("aria-valuetext", `${label}: ${value}%`);
    bar.querySelector(".fill").style.width = `${value}%`;
    $("analysis-percent-text").textContent = `${value}%`;
    $("stage-label").textContent = label;
  }

  showError(message) {
    const box = $("analysis-error");
    box.textContent = message;
    box.hidden = false;
  }

  onEvent(event, data) {
    switch (event) {
      case "session_joined":
        if (data.job_id) this.jobId = data.job_id;
        break;
      case "analysis_progress": {
        if (data.job_id) this.jobId = data.job_id;
        const stage = data.stage || "unspecified";
        this.setProgress(data.percent || 0, stage, STAGE_NAMES[stage] || stage);
        $("stage-message").textContent = data.message || "";
        if (stage !== "ai_inference") $("thinking").hidden = true;
        break;
      }
      case "long_video_detected": {
        const box = $("long-video-notice");
        box.textContent = data.message || `Long video detected (${data.duration_minutes} min): frames are sampled across its length.`;
        box.hidden = false;
        toast("warning", "Long video detected", `${data.duration_minutes} minutes; smart sampling is on.`);
        break;
      }
      case "ai_thinking":
        $("thinking-text").textContent = data.message || "AI is thinking…";
        $("thinking").hidden = false;
        break;
      case "analysis_complete":
        this.complete(data);
        break;
      case "chat_response":
        this.chatChunk(data);
        break;
      case "error":
        this.error(data);
        break;
      default:
        break; // pong, session_left
    }
  }

  complete(data) {
    this.finished = true;
    if (data.job_id) this.jobId = data.job_id;
    $("thinking").hidden = true;
    this.setProgress(100, "complete", STAGE_NAMES.complete);
    const result = data.result || {};
    const total = (data.timings && data.timings.total_s) || (result.timings && result.timings.total_s);
    if (!$("stage-message").textContent) $("stage-message").textContent = "Analysis complete.";
    this.renderResult(result, data.timings || result.timings || {});
    this.setChatEnabled(true, "Ask anything about the video.");
    toast("success", "Analysis complete", total ? `Finished in ${total.toFixed(1)} s.` : "The result is ready.");
  }

  renderResult(result, timings) {
    $("result").hidden = false;
    $("result-model").textContent = result.model ? result.model : "no language model";
    $("result-summary").textContent = result.summary || "No summary: the video was sampled but not described.";
    const list = $("timeline");
    list.replaceChildren();
    const entries = result.timeline || [];
    for (const entry of entries) {
      const start = clock(entry.start_s);
      const end = clock(entry.end_s);
      const when = el("time", { dateTime: `PT${Math.floor(entry.start_s || 0)}S`, text: start === end ? start : `${start}–${end}` });
      const body = el("div", {}, el("span", { text: entry.description || "" }));
      const detections = entry.detections || [];
      if (detections.length) {
        const chips = el("div", { class: "chips" });
        for (const d of detections) {
          chips.append(el("span", { class: d.is_weapon ? "chip weapon" : "chip", text: `${d.class_name} ${Math.round(d.confidence * 100)}%` }));
        }
        body.append(chips);
      }
      list.append(el("li", { "data-testid": "timeline-entry" }, when, body));
    }
    if (!entries.length) {
      // No events: still say what was looked at.
      const frames = (result.frames || []).map((f) => f.time_s || 0);
      const span = frames.length ? ` across ${clock(Math.min(...frames))}–${clock(Math.max(...frames))}` : "";
      list.append(el("li", { class: "none" }, el("span", { class: "empty", text: `No events found in ${frames.length} sampled frame${frames.length === 1 ? "" : "s"}${span}.` })));
    }
    const notes = result.notes || [];
    $("notes").replaceChildren(...notes.map((n) => el("li", { text: n })));
    $("notes-block").hidden = !notes.length;
    const parts = [];
    for (const [key, label] of [["probe_s", "probe"], ["sampling_s", "sampling"], ["detection_s", "detection"], ["inference_s", "inference"], ["total_s", "total"]]) {
      if (timings && timings[key]) parts.push(`${label} ${timings[key].toFixed(2)} s`);
    }
    $("result-timings").textContent = parts.length ? `Timings: ${parts.join(" · ")}` : "";
  }

  error(data) {
    const message = data.message || "Something went wrong.";
    const code = data.code ? ` (${data.code})` : "";
    if (typeof data.sequence === "number") {
      // The job itself failed or was cancelled.
      this.finished = true;
      $("thinking").hidden = true;
      this.setProgress(Number(this.progress.dataset.percent) || 0, "failed", STAGE_NAMES.failed);
      $("stage-message").textContent = "";
      this.showError(`${message}${code}`);
      toast("error", "Analysis failed", `${message}${code}`);
      this.setChatEnabled(Boolean(this.jobId), "Ask anything about the video.");
      return;
    }
    if (this.chatBubble && !data.session_id) {
      this.chatFailed(`${message}${code}`);
      return;
    }
    toast("error", data.session_id ? "Session problem" : "Error", `${message}${code}`);
  }

  // -- Chat ------------------------------------------------------------------------------------

  setChatEnabled(on, hint) {
    const busy = Boolean(this.chatBubble);
    $("chat-input").disabled = !on;
    $("chat-send").disabled = !on || busy;
    $("chat-hint").textContent = hint;
  }

  ask() {
    const input = $("chat-input");
    const question = input.value.trim();
    if (!question || this.chatBubble || !this.jobId) return;
    input.value = "";
    $("chat-empty").hidden = true;
    const log = $("chat-log");
    log.append(el("div", { class: "msg user", "data-testid": "chat-question", text: question }));
    const typing = el("span", { class: "typing", id: "typing-indicator", "data-testid": "typing-indicator", "aria-label": "The assistant is typing" }, el("i"), el("i"), el("i"));
    this.chatBubble = el("div", { class: "msg assistant", "data-testid": "chat-answer", "data-state": "typing", "aria-busy": "true" }, typing, el("span", { class: "text" }));
    log.append(this.chatBubble);
    log.scrollTop = log.scrollHeight;
    $("chat-send").disabled = true;
    this.session.send("chat", { question, job_id: this.jobId });
  }

  chatChunk(data) {
    const bubble = this.chatBubble;
    if (!bubble) return;
    const text = bubble.querySelector(".text");
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
      this.endChat("done");
    }
    const log = $("chat-log");
    log.scrollTop = log.scrollHeight;
  }

  chatFailed(message) {
    const bubble = this.chatBubble;
    const typing = bubble.querySelector(".typing");
    if (typing) typing.remove();
    const text = bubble.querySelector(".text");
    text.textContent = text.textContent ? `${text.textContent}\n\n${message}` : message;
    this.endChat("error");
  }

  endChat(state) {
    const bubble = this.chatBubble;
    bubble.dataset.state = state;
    bubble.removeAttribute("aria-busy");
    this.chatBubble = null;
    $("chat-send").disabled = $("chat-input").disabled;
  }
}

// ---------------------------------------------------------------------------------------------

setupTabs();
// Exposed for debugging in the console and for the end-to-end test's diagnostics.
window.vigil = { live: new LiveView(), analysis: new AnalysisView() };
