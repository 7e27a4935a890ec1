// The detector's boxes over a playing recording: a canvas laid over the <video>, redrawn with
// each video frame (requestVideoFrameCallback where the browser has it, else timeupdate) from the
// detections stored with the recording (GET /api/sources/{id}/detections).
//
// The entries are the frames the detector ran on: those with objects, and an empty one where the
// objects went. A picture shows the boxes of the newest entry at or before its wall time (the
// file's start, from X-Recording-Start, plus the video's time), unless that entry is older than
// MAX_AGE_MS: frames between two entries show what the first shows.

/**
 * @typedef {import("../types/protocol").FrameDetections} FrameDetections
 * @typedef {import("../types/protocol").Detection} Detection
 */

// A still scene's tracked objects are detected again every second (the detector's
// motion_refresh_s), so while they are there a newer entry comes within this.
const MAX_AGE_MS = 1500;
const WEAPON = "#ef4444";
const OTHER = "#22c55e";

export class BoxOverlay {
  /**
   * @param {HTMLVideoElement} video
   * @param {HTMLCanvasElement} canvas
   */
  constructor(video, canvas) {
    this.video = video;
    this.canvas = canvas;
    /** @type {{ at: number, frame: FrameDetections }[]} oldest first */
    this.entries = [];
    this.begins = 0; // the wall time (ms) of the video's time 0
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      /** @type {VideoFrameRequestCallback} */
      const onFrame = (_now, frame) => {
        this.draw(frame.mediaTime);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    } else {
      video.addEventListener("timeupdate", () => this.draw(video.currentTime));
    }
    // Paused, the picture stays: its boxes follow the element's new size.
    new ResizeObserver(() => this.draw(video.currentTime)).observe(canvas);
  }

  /**
   * Draw these entries over the video whose time 0 is `begins`.
   * @param {FrameDetections[]} frames
   * @param {Date} begins
   */
  show(frames, begins) {
    this.begins = begins.getTime();
    this.entries = frames
      .map((frame) => ({ at: Date.parse(frame.at || ""), frame }))
      .filter((entry) => Number.isFinite(entry.at))
      .sort((a, b) => a.at - b.at);
    this.canvas.hidden = this.video.hidden;
    this.draw(this.video.currentTime);
  }

  clear() {
    this.entries = [];
    this.canvas.hidden = true;
    this.canvas.getContext("2d")?.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  /**
   * The entry a picture at wall time `at` (ms) shows, if any.
   * @param {number} at
   */
  entryAt(at) {
    let lo = 0;
    let hi = this.entries.length; // the first entry after `at` is found in [lo, hi]
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid].at <= at) lo = mid + 1;
      else hi = mid;
    }
    const entry = this.entries[lo - 1];
    return entry && at - entry.at <= MAX_AGE_MS ? entry.frame : null;
  }

  /** @param {number} mediaTime the video's time (s) of the picture shown */
  draw(mediaTime) {
    const { canvas, video } = this;
    const scale = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * scale);
    const height = Math.round(canvas.clientHeight * scale);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const context = canvas.getContext("2d");
    if (!context) return;
    context.clearRect(0, 0, width, height);
    const frame = this.entryAt(this.begins + mediaTime * 1000);
    if (!frame || !frame.width || !frame.height || !video.videoWidth || !video.videoHeight) return;
    // The picture inside the element: scaled to fit and centred (a <video>'s object-fit: contain).
    const fit = Math.min(width / video.videoWidth, height / video.videoHeight);
    const shownWidth = video.videoWidth * fit;
    const shownHeight = video.videoHeight * fit;
    const left = (width - shownWidth) / 2;
    const top = (height - shownHeight) / 2;
    // Boxes are in pixels of the detected frame (a camera's substream may be smaller than the
    // recorded main stream).
    const sx = shownWidth / frame.width;
    const sy = shownHeight / frame.height;
    context.lineWidth = 2 * scale;
    context.font = `600 ${12 * scale}px system-ui, sans-serif`;
    context.textBaseline = "top";
    for (const detection of frame.detections) {
      if (!detection.box) continue;
      const x = left + detection.box.x_min * sx;
      const y = top + detection.box.y_min * sy;
      const w = (detection.box.x_max - detection.box.x_min) * sx;
      const h = (detection.box.y_max - detection.box.y_min) * sy;
      const colour = detection.is_weapon ? WEAPON : OTHER;
      context.strokeStyle = colour;
      context.strokeRect(x, y, w, h);
      label(context, detection, x, y, colour, scale);
    }
  }
}

/**
 * The class, confidence and track above a box (inside it when the box touches the top).
 * @param {CanvasRenderingContext2D} context
 * @param {Detection} detection
 * @param {number} x
 * @param {number} y
 * @param {string} colour
 * @param {number} scale
 */
function label(context, detection, x, y, colour, scale) {
  const track = detection.track_id === undefined ? "" : ` #${detection.track_id}`;
  const text = `${detection.class_name}${track} ${Math.round(detection.confidence * 100)}%`;
  const pad = 3 * scale;
  const height = 12 * scale + 2 * pad;
  const top = y - height >= 0 ? y - height : y;
  context.fillStyle = colour;
  context.fillRect(x, top, context.measureText(text).width + 2 * pad, height);
  context.fillStyle = "#000";
  context.fillText(text, x + pad, top + pad);
}
