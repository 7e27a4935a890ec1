// The watch rules of the camera the live view shows: situations in plain language the language
// model watches for, each with what it has done since the detector started (checks, yes answers,
// the last reason or error), a remove button and a small form to add one. Each change sends the
// source's spec with its new rules (PUT /api/sources/{id}); the detector judges them and its
// words come back as a toast.
import { messageOf, sendJson, sourcePath } from "./api.js";
import { $, byId, el } from "./dom.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").WatchRule} WatchRule
 * @typedef {import("../types/protocol").WatchRuleStatus} WatchRuleStatus
 * @typedef {import("./sources.js").SourceStore} SourceStore
 * @typedef {import("./live.js").LiveView} LiveView
 */

/** @param {string} text comma-separated names @returns {string[]} */
const names = (text) => text.split(",").map((n) => n.trim()).filter(Boolean);

export class RulesView {
  /**
   * @param {SourceStore} store
   * @param {LiveView} live
   */
  constructor(store, live) {
    this.store = store;
    this.live = live;
    this.form = byId("rule-form", HTMLFormElement);
    live.select.addEventListener("change", () => this.render());
    store.subscribe(() => this.render());
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.add(); });
    this.render();
  }

  /** The rules of the camera shown, as saved. @returns {WatchRule[]} */
  rules() {
    return this.store.get(this.live.select.value)?.spec.watch_rules ?? [];
  }

  /** @returns {WatchRule} the form's rule */
  formRule() {
    const value = (/** @type {string} */ name) => byId(`rule-${name}`, HTMLInputElement).value.trim();
    const [start, end] = value("active") ? value("active").split("-").map((t) => t.trim()) : ["", ""];
    return {
      id: value("id"), condition: value("condition"), classes: names(value("classes")),
      zones: names(value("zones")), min_dwell_s: Number(value("dwell") || 0),
      motion: byId("rule-motion", HTMLInputElement).checked, check_interval_s: Number(value("interval") || 0),
      budget_per_hour: Number(value("budget") || 0), incident_kind: "", active_start: start ?? "",
      active_end: end ?? "", disabled: false,
    };
  }

  async add() {
    const rule = this.formRule();
    if (await this.save([...this.rules().filter((r) => r.id !== rule.id), rule], `Rule ${rule.id} saved`)) {
      this.form.reset();
    }
  }

  /** @param {string} id */
  async remove(id) {
    await this.save(this.rules().filter((r) => r.id !== id), `Rule ${id} removed`);
  }

  /**
   * @param {WatchRule[]} rules
   * @param {string} done
   * @returns {Promise<boolean>} whether the detector took them
   */
  async save(rules, done) {
    const source = this.store.get(this.live.select.value);
    if (!source) return false;
    try {
      await sendJson("PUT", sourcePath(source.spec.id), { ...source.spec, watch_rules: rules });
      toast("success", done, "");
      await this.store.refresh();
      return true;
    } catch (error) {
      toast("error", "Could not save the watch rules", messageOf(error));
      return false;
    }
  }

  render() {
    const source = this.store.get(this.live.select.value);
    $("rules-card").hidden = !source;
    if (!source) return;
    /** @type {Map<string, WatchRuleStatus>} */
    const status = new Map((source.watch_rule_status ?? []).map((s) => [s.rule_id, s]));
    const rows = this.rules().map((rule) => {
      const s = status.get(rule.id);
      const filter = [rule.classes.join(", ") || "any class", rule.zones.length ? `in ${rule.zones.join(", ")}` : "",
        rule.min_dwell_s ? `dwell ${rule.min_dwell_s} s` : "", rule.motion ? "motion" : "",
        rule.active_start ? `${rule.active_start}–${rule.active_end}` : ""].filter(Boolean).join(" · ");
      const done = s ? `${s.checks} checks, ${s.matches} yes` : "not checked yet";
      const last = s?.last_error ? `error: ${s.last_error}` : s?.last_reason ? `“${s.last_reason}”` : "";
      const remove = el("button", { type: "button", class: "link-button", text: "Remove" });
      remove.setAttribute("aria-label", `Remove rule ${rule.id}`);
      remove.addEventListener("click", () => this.remove(rule.id));
      return el("li", { "data-testid": "rule-row", "data-rule": rule.id },
        el("span", {}, el("strong", { text: rule.condition }),
          el("span", { class: "muted small", text: ` · ${rule.id}${rule.disabled ? " (off)" : ""} · ${filter}` }),
          el("br"), el("span", { class: "small", "data-testid": "rule-status", text: done }),
          last ? el("span", { class: "muted small", text: ` · ${last}` }) : null),
        remove);
    });
    $("rule-list").replaceChildren(...rows);
    $("rules-hint").textContent = rows.length
      ? `Times in ${source.spec.time_zone || "the detector's time zone"}.`
      : "No watch rules on this camera.";
  }
}
