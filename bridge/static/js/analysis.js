// The analysis view: upload a video (or take a range of a camera's recording picked on the
// timeline), follow its analysis on the session (/ws/session events), show the result and chat
// about it.
//   POST /api/videos?name=&analyze=true&session_id=   the raw file as the body
//   POST /api/analyses {recording: {source_id, start, end}, session_id}   a range of a recording
import { messageOf, sendJson } from "./api.js";
import { $, byId, find } from "./dom.js";
import { ChatView } from "./chat.js";
import { clock } from "./format.js";
import { when } from "./labels.js";
import { authHeaders } from "./net.js";
import { renderResult } from "./result.js";
import { SessionSocket } from "./session.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").SessionData} SessionData
 * @typedef {import("../types/protocol").UploadAnswer} UploadAnswer
 * @typedef {import("./range.js").PickedRange} PickedRange
 * @typedef {import("./session.js").SessionState} SessionState
 * @typedef {{id: string, video?: {duration_s?: number}, recording?: {start: string, end: string}}} RecordingJob
 */

/** @type {Record<string, string>} */
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

/** @type {Record<SessionState, string>} */
const SESSION_STATES = { connecting: "connecting…", connected: "connected", lost: "disconnected", idle: "idle" };

export class AnalysisView {
  constructor() {
    this.form = byId("upload-form", HTMLFormElement);
    this.file = byId("video-file", HTMLInputElement);
    this.uploadButton = byId("upload-button", HTMLButtonElement);
    this.progress = $("analysis-progress");
    this.session = new SessionSocket((event, data) => this.onEvent(event, data), (state) => this.onSessionState(state));
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {string | null} */
    this.jobId = null;
    this.finished = false;
    this.chat = new ChatView(this.session, () => this.jobId);
    /** @type {XMLHttpRequest | null} */
    this.upload = null;
    this.fetching = false; // a range of a recording is being fetched
    this.file.addEventListener("change", () => { this.uploadButton.disabled = !this.file.files?.length; });
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.startUpload(); });
  }

  /** @param {SessionState} state */
  onSessionState(state) {
    $("session-status").textContent = `Session: ${SESSION_STATES[state]}`;
  }

  reset() {
    this.finished = false;
    this.jobId = null;
    $("analysis-card").hidden = false;
    $("analysis-subject").hidden = true;
    $("result").hidden = true;
    $("long-video-notice").hidden = true;
    $("analysis-error").hidden = true;
    $("thinking").hidden = true;
    $("stage-message").textContent = "";
    this.setProgress(0, "queued", "Waiting for the upload…");
    this.chat.setEnabled(false, "Waiting for the analysis to start…");
  }

  startUpload() {
    const file = this.file.files?.[0];
    if (!file || this.upload) return;
    this.reset();
    const sessionId = this.joinNewSession();
    const url = `/api/videos?${new URLSearchParams({ name: file.name, analyze: "true", session_id: sessionId })}`;
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
      this.uploadButton.disabled = !this.file.files?.length;
      /** @type {UploadAnswer | null} */
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        this.setUpload(100, `Uploaded ${file.name}`);
        if (body.job) {
          this.jobId = body.job.id;
          this.chat.setEnabled(true, "Ask anything about the video.");
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

  /** A fresh session, joined before the job is asked for: the bridge binds the job to it. */
  joinNewSession() {
    const sessionId = crypto.randomUUID ? crypto.randomUUID() : `s-${Date.now()}-${Math.random().toString(16).slice(2)}`;
    this.sessionId = sessionId;
    this.session.open({ session_id: sessionId });
    return sessionId;
  }

  /**
   * Analyse a range of a camera's recording: the bridge answers once the analyzer has fetched it
   * from the detector service; then the job's events arrive on the session as for an upload.
   * @param {PickedRange} range
   */
  async analyzeRecording(range) {
    if (this.upload || this.fetching) return;
    this.reset();
    const what = `${range.name}, ${when(range.start)}–${when(range.end)}`;
    this.setProgress(0, "queued", `Fetching the recording of ${what}…`);
    // Times the answers cite ([mm:ss]) count from the start of what is recorded of the range.
    $("analysis-subject").textContent = `Recording of ${what}.`;
    $("analysis-subject").hidden = false;
    $("stage-message").textContent = "The analyzer fetches the range from the recording first.";
    const session_id = this.joinNewSession();
    const recording = { source_id: range.sourceId, start: range.start.toISOString(), end: range.end.toISOString() };
    this.fetching = true;
    try {
      /** @type {RecordingJob} */
      const job = await sendJson("POST", "/api/analyses", { recording, session_id });
      this.jobId = this.jobId || job.id;
      if (job.recording) {
        const covered = `${when(job.recording.start)}–${when(job.recording.end)}`;
        $("analysis-subject").textContent = `Recording of ${range.name}, ${covered} (as recorded); times count from ${when(job.recording.start)}.`;
      }
      this.chat.setEnabled(true, "Ask anything about the recording.");
      toast("success", "Recording fetched", `${what}: ${clock(job.video?.duration_s)} of video.`);
    } catch (error) {
      this.session.closedByUs = true;
      this.setProgress(0, "failed", STAGE_NAMES.failed);
      $("stage-message").textContent = "";
      this.showError(`Could not analyse the recording of ${what}: ${messageOf(error)}`);
      toast("error", "Recording not analysed", messageOf(error));
    } finally {
      this.fetching = false;
    }
  }

  /** @param {string} why */
  failUpload(why) {
    this.setUpload(0, "Upload failed");
    $("upload-progress").dataset.state = "failed";
    this.showError(`Upload failed: ${why}`);
    toast("error", "Upload failed", why);
    this.session.closedByUs = true;
  }

  /**
   * @param {number} percent
   * @param {string} label
   */
  setUpload(percent, label) {
    const bar = $("upload-progress");
    const value = Math.round(percent);
    bar.setAttribute("aria-valuenow", String(value));
    bar.dataset.percent = String(value);
    delete bar.dataset.state;
    find(bar, ".fill", HTMLElement).style.width = `${percent}%`;
    $("upload-percent-text").textContent = `${value}%`;
    $("upload-label").textContent = label;
  }

  /**
   * @param {number} percent
   * @param {string} stage
   * @param {string} label
   */
  setProgress(percent, stage, label) {
    const bar = this.progress;
    const value = Math.max(0, Math.min(100, Math.round(percent)));
    bar.dataset.stage = stage;
    bar.dataset.percent = String(value);
    bar.dataset.active = String(value < 100 && stage !== "failed");
    bar.setAttribute("aria-valuenow", String(value));
    bar.setAttribute("aria-valuetext", `${label}: ${value}%`);
    find(bar, ".fill", HTMLElement).style.width = `${value}%`;
    $("analysis-percent-text").textContent = `${value}%`;
    $("stage-label").textContent = label;
  }

  /** @param {string} message */
  showError(message) {
    const box = $("analysis-error");
    box.textContent = message;
    box.hidden = false;
  }

  /**
   * @param {string} event
   * @param {SessionData} data
   */
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
        this.chat.chunk(data);
        break;
      case "error":
        this.error(data);
        break;
      default:
        break; // pong, session_left
    }
  }

  /** @param {SessionData} data */
  complete(data) {
    this.finished = true;
    if (data.job_id) this.jobId = data.job_id;
    $("thinking").hidden = true;
    this.setProgress(100, "complete", STAGE_NAMES.complete);
    const result = data.result || {};
    const total = (data.timings && data.timings.total_s) || (result.timings && result.timings.total_s);
    if (!$("stage-message").textContent) $("stage-message").textContent = "Analysis complete.";
    renderResult(result, data.timings || result.timings || {});
    this.chat.setEnabled(true, "Ask anything about the video.");
    toast("success", "Analysis complete", total ? `Finished in ${total.toFixed(1)} s.` : "The result is ready.");
  }

  /** @param {SessionData} data */
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
      this.chat.setEnabled(Boolean(this.jobId), "Ask anything about the video.");
      return;
    }
    if (this.chat.busy && !data.session_id) {
      this.chat.failed(`${message}${code}`);
      return;
    }
    toast("error", data.session_id ? "Session problem" : "Error", `${message}${code}`);
  }
}
