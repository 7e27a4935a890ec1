// The incidents panel: a toast with the snapshot when the live feed says an incident alerts (it
// opened, or the language model confirmed it, as the camera's alert policy says), badges with the
// model's verdict and false alarms, the
// history (GET /api/incidents) filtered by camera, class and time, and playback of an incident's
// part of the recording (its `recording` range, else from 10 s before it opened to 10 s after it
// closed).
import { getJson, messageOf } from "./api.js";
import { $, byId, el } from "./dom.js";
import { EVENT_LABELS, label, when } from "./labels.js";
import { Player } from "./player.js";
import { FalseAlarmTable, reviewControls } from "./reviews.js";
import { sourceName } from "./sources.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").Incident} Incident
 * @typedef {import("../types/protocol").IncidentPage} IncidentPage
 * @typedef {import("../types/protocol").FeedMessage} FeedMessage
 * @typedef {import("./feed.js").Feed} Feed
 * @typedef {import("./sources.js").SourceStore} SourceStore
 */

const MARGIN_MS = 10_000;
const PAGE_SIZE = "200";
/** @type {Record<string, number>} the "since" filter, in hours */
const SINCE_HOURS = { hour: 1, day: 24, week: 168 };

export class IncidentsView {
  /**
   * @param {SourceStore} store
   * @param {Feed} feed
   * @param {() => void} show opens this panel
   */
  constructor(store, feed, show) {
    this.store = store;
    this.show = show;
    /** @type {Incident[]} */
    this.incidents = [];
    this.sourceFilter = byId("incident-source", HTMLSelectElement);
    this.classFilter = byId("incident-class", HTMLSelectElement);
    this.sinceFilter = byId("incident-since", HTMLSelectElement);
    this.player = new Player("incident-video", "incident-caption", "incident-notice", "incident-boxes");
    this.falseAlarms = new FalseAlarmTable(store);
    for (const filter of [this.classFilter, this.sinceFilter]) filter.addEventListener("change", () => this.renderList());
    this.sourceFilter.addEventListener("change", () => this.load());
    $("incidents-refresh").addEventListener("click", () => this.load());
    store.subscribe((sources) => {
      const current = this.sourceFilter.value;
      this.sourceFilter.replaceChildren(el("option", { value: "", text: "All cameras" }),
        ...sources.map((s) => el("option", { value: s.spec.id, text: sourceName(s, s.spec.id) })));
      this.sourceFilter.value = sources.some((s) => s.spec.id === current) ? current : "";
      this.renderList();
    });
    feed.onMessage((message) => this.received(message));
    feed.onState((state) => {
      const node = $("feed-state");
      node.dataset.state = state;
      node.textContent = state === "connected" ? "Live feed on" : state === "connecting" ? "Live feed connecting…" : "Live feed lost · reconnecting…";
    });
    this.load();
  }

  async load() {
    try {
      /** @type {IncidentPage} */
      const page = await getJson("/api/incidents", { source_id: this.sourceFilter.value, page_size: PAGE_SIZE });
      this.incidents = page.incidents;
      $("incidents-error").hidden = true;
    } catch (error) {
      this.incidents = [];
      $("incidents-error").hidden = false;
      $("incidents-error").textContent = `Could not load the incidents: ${messageOf(error)}`;
    }
    this.renderList();
  }

  /** @param {FeedMessage} message */
  received(message) {
    if (message.type === "gap") {
      this.load();
      this.falseAlarms.schedule();
    } else if (message.type === "incident") {
      const incident = message.incident;
      const wanted = !this.sourceFilter.value || this.sourceFilter.value === incident.source_id;
      if (wanted && this.incidents.some((i) => i.id === incident.id)) this.replace(incident);
      // A review of an incident this list does not show (older, or filtered out) adds nothing.
      else if (message.event !== "reviewed") {
        this.incidents = this.incidents.filter((i) => i.id !== incident.id);
        if (wanted) this.incidents.unshift(incident);
        this.renderList();
      }
      this.falseAlarms.schedule();
      if (!message.alert) return;
      // A camera added a moment ago: learn its name first.
      if (this.store.get(incident.source_id)) this.announce(incident, message.snapshot);
      else this.store.refresh().catch(() => {}).finally(() => this.announce(incident, message.snapshot));
    } else if (message.type === "source_event") {
      const event = message.event;
      if (event.kind.startsWith("camera_")) {
        const name = sourceName(this.store.get(event.source_id), event.source_id);
        const what = label(EVENT_LABELS, event.kind);
        toast(event.cleared ? "success" : "warning", event.cleared ? `${name}: ${what} cleared` : `${name}: ${what}`, event.detail,
          { image: message.snapshot ? `data:image/jpeg;base64,${message.snapshot}` : undefined, imageAlt: `${name}, ${what}`, testid: "camera-toast" });
        this.store.refresh().catch(() => {});
      }
    }
  }

  /**
   * @param {Incident} incident
   * @param {string | null} snapshot base64 JPEG
   */
  announce(incident, snapshot) {
    const name = sourceName(this.store.get(incident.source_id), incident.source_id);
    const verdict = incident.verification ? ` · ${verdictText(incident)}` : "";
    toast("error", `${capital(incident.class_name)} on ${name}`, `${when(incident.opened_at)} · ${Math.round(incident.peak_confidence * 100)}%${verdict}`, {
      image: snapshot ? `data:image/jpeg;base64,${snapshot}` : undefined,
      imageAlt: `${name} when the ${incident.class_name} was seen`,
      action: { label: "View", run: () => { this.show(); this.play(incident); } },
      ms: 15_000,
      testid: "incident-toast",
    });
  }

  renderList() {
    const classes = [...new Set(this.incidents.map((i) => i.class_name))].sort();
    const current = this.classFilter.value;
    this.classFilter.replaceChildren(el("option", { value: "", text: "All classes" }), ...classes.map((c) => el("option", { value: c, text: c })));
    this.classFilter.value = classes.includes(current) ? current : "";
    const hours = SINCE_HOURS[this.sinceFilter.value];
    const since = hours ? Date.now() - hours * 3600_000 : 0;
    const shown = this.incidents.filter((i) =>
      (!this.classFilter.value || i.class_name === this.classFilter.value) &&
      (!since || new Date(i.opened_at || 0).getTime() >= since));
    $("incident-list").replaceChildren(...shown.map((i) => this.row(i)));
    $("incidents-empty").hidden = shown.length > 0;
    $("incidents-count").textContent = `${shown.length} of ${this.incidents.length}`;
  }

  /** @param {Incident} incident */
  row(incident) {
    const name = sourceName(this.store.get(incident.source_id), incident.source_id);
    const open = !incident.closed_at;
    const button = el("button", { type: "button", class: "incident-open" },
      el("time", { dateTime: incident.opened_at || "", text: when(incident.opened_at) }),
      el("span", { class: "incident-what" }, el("strong", { text: capital(incident.class_name) }), el("span", { class: "muted", text: ` on ${name}` })),
      el("span", { class: "chip", text: `${Math.round(incident.peak_confidence * 100)}%` }),
      el("span", { class: open ? "badge" : "badge muted-badge", "data-state": open ? "failed" : "stopped", text: open ? "Open" : "Closed" }),
      ...verdictBadges(incident));
    button.setAttribute("aria-label", `Play the ${incident.class_name} on ${name} at ${when(incident.opened_at)}`);
    button.addEventListener("click", () => this.play(incident));
    const review = reviewControls(incident, `${incident.class_name} on ${name}`, (reviewed) => {
      this.replace(reviewed);
      this.falseAlarms.schedule();
    });
    return el("li", { "data-testid": "incident-row", "data-incident": incident.id }, button, review);
  }

  /**
   * A newer state of an incident in the list, where it is (a review does not reorder it).
   * @param {Incident} incident
   */
  replace(incident) {
    this.incidents = this.incidents.map((i) => (i.id === incident.id ? incident : i));
    this.renderList();
  }

  /** @param {Incident} incident */
  play(incident) {
    const opened = new Date(incident.opened_at || Date.now());
    const closed = incident.closed_at ? new Date(incident.closed_at) : new Date();
    const range = incident.recording;
    const start = range && range.start ? new Date(range.start) : new Date(opened.getTime() - MARGIN_MS);
    const end = range && range.end ? new Date(range.end) : new Date(closed.getTime() + MARGIN_MS);
    const name = sourceName(this.store.get(incident.source_id), incident.source_id);
    this.player.play(incident.source_id, start, end, new Date(opened.getTime() - 2000), `${capital(incident.class_name)} on ${name}`);
    $("incident-player").scrollIntoView({ block: "nearest" });
  }
}

/** @param {string} text */
const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/** @param {Incident} incident */
const verdictText = (incident) => {
  if (incident.false_alarm) return "False alarm";
  const verdict = incident.verification ? incident.verification.verdict : "";
  return verdict === "confirmed" ? "Confirmed by the model" : verdict === "uncertain" ? "Model uncertain" : "";
};

/**
 * The model's check of an incident as badges: verifying, its verdict (with what it saw as the
 * tooltip), false alarm.
 * @param {Incident} incident
 */
const verdictBadges = (incident) => {
  const state = incident.verification_state || "unspecified";
  if (state === "pending") return [el("span", { class: "badge muted-badge", "data-testid": "incident-verdict", text: "Verifying…" })];
  if (state === "skipped") return [el("span", { class: "badge muted-badge", "data-testid": "incident-verdict", text: "Not verified" })];
  const text = verdictText(incident);
  if (state !== "done" || !text) return [];
  const badge = el("span", { class: "badge", "data-testid": "incident-verdict", "data-state": incident.false_alarm ? "stopped" : "failed", text });
  const v = incident.verification;
  if (v) badge.title = `${v.sees} · threat ${v.threat_level} · ${v.reason}`;
  return [badge];
};
