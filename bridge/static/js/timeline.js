// The recordings timeline: one row per camera over the chosen window (10 min to 24 h), with
// the recording's coverage as bars (GET /api/sources/{id}/coverage; what lies between bars is a
// gap), incidents and zone or camera events as markers (GET /api/incidents, GET /api/events).
// A click on a row plays the recording from that moment (recording.mp4 for a window around it); a
// marker is a button that plays its moment, for keyboards as well. A drag across a row picks a
// range of that camera's recording to analyse (range.js).
import { ApiError, getJson, messageOf } from "./api.js";
import { $, byId, el } from "./dom.js";
import { EVENT_LABELS, label, when } from "./labels.js";
import { Player } from "./player.js";
import { RangePicker } from "./range.js";
import { sourceName } from "./sources.js";

/**
 * @typedef {import("../types/protocol").Coverage} Coverage
 * @typedef {import("../types/protocol").EventPage} EventPage
 * @typedef {import("../types/protocol").IncidentPage} IncidentPage
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("./sources.js").SourceStore} SourceStore
 * @typedef {import("./range.js").PickedRange} PickedRange
 * @typedef {{at: Date, kind: "incident" | "event", text: string}} Marker
 */

const BEFORE_MS = 10_000; // played before the moment clicked
const AFTER_MS = 50_000; // and after it
const REFRESH_MS = 30_000;

export class TimelineView {
  /**
   * @param {SourceStore} store
   * @param {(range: PickedRange) => void} onAnalyze asked to analyse a range of a recording
   */
  constructor(store, onAnalyze) {
    this.store = store;
    this.picker = new RangePicker(onAnalyze);
    this.window = byId("timeline-window", HTMLSelectElement);
    this.player = new Player("timeline-video", "timeline-caption", "timeline-notice", "timeline-boxes");
    this.loading = false;
    this.again = false;
    this.window.addEventListener("change", () => this.load());
    $("panel-recordings").addEventListener("show", () => this.load());
    /** @type {string[]} the sources of the rows shown */
    this.rendered = [];
    store.subscribe((sources) => {
      const changed = sources.map((s) => s.spec.id).join() !== this.rendered.join();
      if (changed && !$("panel-recordings").hidden) this.load();
    });
    setInterval(() => { if (!document.hidden && !$("panel-recordings").hidden) this.load(); }, REFRESH_MS);
    if (!$("panel-recordings").hidden) this.load(); // opened by the URL before this view existed
  }

  async load() {
    if (this.loading) {
      this.again = true; // a window chosen while loading: load that one next
      return;
    }
    this.loading = true;
    try {
      const end = new Date();
      const start = new Date(end.getTime() - Number(this.window.value) * 60_000);
      const sources = this.store.loaded ? this.store.sources : await this.store.refresh();
      this.picker.setCameras(sources.map((s) => ({ id: s.spec.id, name: sourceName(s, s.spec.id) })));
      const rows = await Promise.all(sources.map((s) => this.row(s, start, end)));
      $("timeline-rows").replaceChildren(...rows);
      $("timeline-empty").hidden = sources.length > 0;
      this.rendered = sources.map((s) => s.spec.id);
      this.axis(start, end);
    } catch (error) {
      $("timeline-empty").hidden = false;
      $("timeline-empty").textContent = `Could not load the timeline: ${messageOf(error)}`;
    } finally {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  /**
   * @param {Date} start
   * @param {Date} end
   */
  axis(start, end) {
    const ticks = [];
    for (let i = 0; i <= 4; i += 1) {
      const at = new Date(start.getTime() + ((end.getTime() - start.getTime()) * i) / 4);
      ticks.push(el("span", { style: `left: ${i * 25}%`, text: at.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit" }) }));
    }
    $("timeline-axis").replaceChildren(...ticks);
  }

  /**
   * @param {Source} source
   * @param {Date} start
   * @param {Date} end
   */
  async row(source, start, end) {
    const id = source.spec.id;
    const name = sourceName(source, id);
    const range = { start: start.toISOString(), end: end.toISOString() };
    const [coverage, incidents, events] = await Promise.all([
      getJson(`/api/sources/${encodeURIComponent(id)}/coverage`, range).then(
        (/** @type {Coverage} */ c) => c, (/** @type {unknown} */ e) => (e instanceof Error ? e : new Error(String(e)))),
      getJson("/api/incidents", { source_id: id, page_size: "200" }).then(
        (/** @type {IncidentPage} */ p) => p.incidents, () => []),
      getJson("/api/events", { source_id: id, ...range, page_size: "200" }).then(
        (/** @type {EventPage} */ p) => p.events, () => []),
    ]);
    const span = end.getTime() - start.getTime();
    const at = (/** @type {Date} */ t) => Math.min(100, Math.max(0, ((t.getTime() - start.getTime()) / span) * 100));
    const track = el("div", { class: "track", "data-testid": "timeline-track" });
    let covered = 0;
    if (coverage instanceof Error) {
      const missing = coverage instanceof ApiError && coverage.status === 404;
      track.append(el("span", { class: "track-note", text: missing ? "No recording information" : coverage.message }));
    } else {
      for (const r of coverage.ranges) {
        const from = new Date(r.start || start);
        const to = r.end ? new Date(r.end) : end;
        const left = at(from);
        const width = Math.max(0.3, at(to) - left);
        covered += to.getTime() - from.getTime();
        track.append(el("span", { class: "coverage", "data-testid": "coverage-bar", style: `left: ${left}%; width: ${width}%` }));
      }
    }
    /** @type {Marker[]} */
    const markers = [];
    for (const i of incidents) {
      const opened = new Date(i.opened_at || 0);
      if (opened >= start && opened <= end) markers.push({ at: opened, kind: "incident", text: `${i.class_name} ${Math.round(i.peak_confidence * 100)}%` });
    }
    for (const e of events) {
      if (!e.at) continue;
      const what = [label(EVENT_LABELS, e.kind), e.zone, e.class_name, e.direction].filter(Boolean).join(" ");
      markers.push({ at: new Date(e.at), kind: "event", text: what });
    }
    for (const marker of markers) {
      const button = el("button", { type: "button", class: "marker", "data-kind": marker.kind, "data-testid": `marker-${marker.kind}`, style: `left: clamp(9px, ${at(marker.at)}%, calc(100% - 9px))` });
      const words = `${marker.text} at ${when(marker.at)}`;
      button.setAttribute("aria-label", `Play ${name}: ${words}`);
      button.title = words;
      button.addEventListener("click", (event) => { event.stopPropagation(); this.playAt(id, name, marker.at); });
      track.append(button);
    }
    this.picker.attach(track, id, start, span);
    track.addEventListener("click", (event) => {
      const box = track.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      this.playAt(id, name, new Date(start.getTime() + fraction * span));
    });
    const share = coverage instanceof Error ? "" : `${Math.round((covered / span) * 100)}% recorded`;
    return el("li", { class: "timeline-row", "data-testid": "timeline-row", "data-source": id },
      el("div", { class: "timeline-label" }, el("strong", { text: name }), el("span", { class: "muted small", text: share })),
      track);
  }

  /**
   * @param {string} id
   * @param {string} name
   * @param {Date} moment
   */
  playAt(id, name, moment) {
    const start = new Date(moment.getTime() - BEFORE_MS);
    const end = new Date(Math.min(Date.now(), moment.getTime() + AFTER_MS));
    this.player.play(id, start, end, moment, `${name} from ${when(moment)}`);
  }
}
