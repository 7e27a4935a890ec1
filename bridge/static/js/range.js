// Picking a range of a camera's recording to analyse: dragged across a camera's row of the
// timeline (shown there as a band), or typed into the "Analyse a range" form beneath it. The
// form's button hands the range to the analysis view (POST /api/analyses with `recording`).
import { $, byId, el } from "./dom.js";
import { when } from "./labels.js";

/**
 * @typedef {{sourceId: string, name: string, start: Date, end: Date}} PickedRange
 */

const DRAG_PX = 5; // a shorter move is a click (which plays)

/** @param {Date} at a time for a datetime-local input, in local time, to the second */
function localValue(at) {
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
}

export class RangePicker {
  /** @param {(range: PickedRange) => void} onAnalyze */
  constructor(onAnalyze) {
    this.source = byId("range-source", HTMLSelectElement);
    this.start = byId("range-start", HTMLInputElement);
    this.end = byId("range-end", HTMLInputElement);
    this.note = $("range-note");
    /** @type {Map<string, string>} source id -> name shown */
    this.names = new Map();
    byId("range-form", HTMLFormElement).addEventListener("submit", (event) => {
      event.preventDefault();
      const range = this.read();
      if (range) onAnalyze(range);
    });
  }

  /**
   * The cameras the form offers, as the timeline shows them.
   * @param {{id: string, name: string}[]} cameras
   */
  setCameras(cameras) {
    const chosen = this.source.value;
    this.names = new Map(cameras.map((c) => [c.id, c.name]));
    this.source.replaceChildren(...cameras.map((c) => el("option", { value: c.id, text: c.name })));
    if (this.names.has(chosen)) this.source.value = chosen;
  }

  /**
   * Let a camera's track select a range by dragging; a drag swallows the click that ends it.
   * @param {HTMLElement} track
   * @param {string} sourceId
   * @param {Date} start the time at the track's left edge
   * @param {number} span milliseconds across the track
   */
  attach(track, sourceId, start, span) {
    /** @type {{x: number, id: number} | null} */
    let down = null;
    let dragged = false;
    const band = el("span", { class: "selection", "data-testid": "range-selection" });
    band.hidden = true;
    track.append(band);
    const timeAt = (/** @type {number} */ x) => {
      const box = track.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (x - box.left) / box.width));
      return { fraction, at: new Date(start.getTime() + fraction * span) };
    };
    const draw = (/** @type {number} */ x) => {
      if (!down) return;
      const a = timeAt(down.x).fraction;
      const b = timeAt(x).fraction;
      band.style.left = `${Math.min(a, b) * 100}%`;
      band.style.width = `${Math.abs(b - a) * 100}%`;
      band.hidden = false;
    };
    track.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || (event.target instanceof HTMLElement && event.target.closest(".marker"))) return;
      down = { x: event.clientX, id: event.pointerId };
      dragged = false;
    });
    track.addEventListener("pointermove", (event) => {
      if (!down || event.pointerId !== down.id) return;
      if (!dragged && Math.abs(event.clientX - down.x) < DRAG_PX) return;
      if (!dragged) track.setPointerCapture(down.id);
      dragged = true;
      draw(event.clientX);
    });
    track.addEventListener("pointerup", (event) => {
      if (!down || event.pointerId !== down.id) return;
      if (dragged) {
        const a = timeAt(down.x).at;
        const b = timeAt(event.clientX).at;
        this.select(sourceId, a < b ? a : b, a < b ? b : a);
      }
      down = null;
    });
    // Capture: runs before the track's own click handler (which plays the moment clicked).
    track.addEventListener("click", (event) => {
      if (!dragged) return;
      dragged = false;
      event.stopImmediatePropagation();
    }, true);
  }

  /**
   * Put a range into the form (and show its band on that camera's track only).
   * @param {string} sourceId
   * @param {Date} start
   * @param {Date} end
   */
  select(sourceId, start, end) {
    for (const band of document.querySelectorAll("#timeline-rows .selection")) {
      if (band instanceof HTMLElement && !band.closest(`[data-source="${CSS.escape(sourceId)}"]`)) band.hidden = true;
    }
    if (this.names.has(sourceId)) this.source.value = sourceId;
    this.start.value = localValue(start);
    this.end.value = localValue(end);
    this.say(`${this.names.get(sourceId) || sourceId}: ${when(start)}–${when(end)}`);
  }

  /** @returns {PickedRange | null} the form's range, or null (said why) when it has none */
  read() {
    const sourceId = this.source.value;
    const start = new Date(this.start.value);
    const end = new Date(this.end.value);
    if (!sourceId) return this.refuse("Choose a camera.");
    if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) return this.refuse("Give the range's start and end.");
    if (end <= start) return this.refuse("The range's end must be after its start.");
    this.say("");
    return { sourceId, name: this.names.get(sourceId) || sourceId, start, end };
  }

  /** @param {string} text */
  refuse(text) {
    this.say(text);
    return null;
  }

  /** @param {string} text */
  say(text) {
    this.note.textContent = text;
    this.note.hidden = !text;
  }
}
