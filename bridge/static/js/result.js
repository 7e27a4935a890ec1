// An analysis' result: summary, timeline of events with their detections, notes and timings.
import { $, el } from "./dom.js";
import { clock } from "./format.js";

/**
 * @typedef {import("../types/protocol").AnalysisResult} AnalysisResult
 * @typedef {import("../types/protocol").Timings} Timings
 */

/** @type {[keyof Timings, string][]} */
const TIMING_LABELS = [["probe_s", "probe"], ["sampling_s", "sampling"], ["detection_s", "detection"], ["inference_s", "inference"], ["total_s", "total"]];

/**
 * @param {AnalysisResult} result
 * @param {Timings} timings
 */
export function renderResult(result, timings) {
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
  for (const [key, label] of TIMING_LABELS) {
    const seconds = timings && timings[key];
    if (seconds) parts.push(`${label} ${seconds.toFixed(2)} s`);
  }
  $("result-timings").textContent = parts.length ? `Timings: ${parts.join(" · ")}` : "";
}
