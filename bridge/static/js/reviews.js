// Operators' feedback on incidents: Confirm / Dismiss buttons on each incident (a later review
// replaces an earlier one), a "False alarm" or "Confirmed" badge, and the false-alarm rate per
// camera, class and watch rule (GET /api/incidents/stats). A false alarm is an incident an
// operator dismissed, or one the model rejected that nobody confirmed.
import { getJson, messageOf, sendJson } from "./api.js";
import { $, el } from "./dom.js";
import { sourceName } from "./sources.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").Incident} Incident
 * @typedef {import("../types/protocol").IncidentStats} IncidentStats
 * @typedef {import("../types/protocol").IncidentStatsList} IncidentStatsList
 * @typedef {import("./sources.js").SourceStore} SourceStore
 */

/** @type {Record<string, string>} the decision a button sends -> its label */
const DECISIONS = { confirmed: "Confirm", dismissed: "Dismiss" };

/**
 * Keep a review of an incident; the incident as reviewed.
 * @param {string} id
 * @param {"confirmed" | "dismissed"} decision
 * @param {string} [note]
 * @returns {Promise<Incident>}
 */
export function reviewIncident(id, decision, note = "") {
  return sendJson("POST", `/api/incidents/${encodeURIComponent(id)}/review`, { decision, note });
}

/**
 * The badge saying what an incident turned out to be; null while nobody (and no model) said.
 * @param {Incident} incident
 */
export function reviewBadge(incident) {
  if (incident.false_alarm) return el("span", { class: "badge false-alarm", "data-testid": "false-alarm-badge", text: "False alarm" });
  if (incident.review && incident.review.decision === "confirmed") {
    return el("span", { class: "badge", "data-state": "failed", "data-testid": "confirmed-badge", text: "Confirmed" });
  }
  return null;
}

/**
 * An incident's badge and its Confirm / Dismiss buttons (the current decision pressed).
 * @param {Incident} incident
 * @param {string} what how the buttons name the incident to a screen reader ("knife on Door")
 * @param {(incident: Incident) => void} reviewed called with the incident once its review is kept
 */
export function reviewControls(incident, what, reviewed) {
  const current = incident.review ? incident.review.decision : "";
  const buttons = Object.entries(DECISIONS).map(([decision, label]) => {
    const button = el("button", {
      type: "button", class: "review-button", text: label, "data-decision": decision,
      "aria-pressed": String(decision === current), "aria-label": `${label} the ${what}`,
    });
    button.addEventListener("click", async () => {
      for (const b of buttons) b.disabled = true;
      try {
        reviewed(await reviewIncident(incident.id, decision === "confirmed" ? "confirmed" : "dismissed"));
      } catch (error) {
        toast("error", "Could not save the review", messageOf(error));
        for (const b of buttons) b.disabled = false;
      }
    });
    return button;
  });
  return el("div", { class: "review-bar", "data-testid": "review-bar" }, reviewBadge(incident), ...buttons);
}

/** The false-alarm rate per camera, class and rule, reloaded a moment after incidents change. */
export class FalseAlarmTable {
  /** @param {SourceStore} store */
  constructor(store) {
    this.store = store;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    store.subscribe(() => this.schedule());
    this.load();
  }

  /** Reload soon: a burst of incident events costs one request. */
  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), 250);
  }

  async load() {
    const error = $("false-alarms-error");
    try {
      /** @type {IncidentStatsList} */
      const list = await getJson("/api/incidents/stats");
      error.hidden = true;
      this.render(list.stats);
    } catch (failure) {
      error.hidden = false;
      error.textContent = `Could not count the false alarms: ${messageOf(failure)}`;
    }
  }

  /** @param {IncidentStats[]} stats */
  render(stats) {
    $("false-alarm-rows").replaceChildren(...stats.map((s) => el("tr", { "data-testid": "false-alarm-row" },
      el("td", { text: sourceName(this.store.get(s.source_id), s.source_id) }),
      el("td", { text: s.class_name }),
      el("td", { text: s.rule_id || "—" }),
      el("td", { class: "number", text: String(s.incidents) }),
      el("td", { class: "number", text: String(s.false_alarms) }),
      el("td", { class: "number", "data-testid": "false-alarm-rate", text: `${Math.round(s.false_alarm_rate * 100)}%` }))));
    $("false-alarms-empty").hidden = stats.length > 0;
    $("false-alarm-table").hidden = stats.length === 0;
  }
}
