// Camera management, in a dialog: the sources with their masked addresses, a mode to change and
// a remove button each, and a form to add one (POST /api/sources; mode changes PUT
// /api/sources/{id}). Addresses typed here may carry passwords: the form is emptied once the
// bridge has the camera, and from then on the page only shows the address as the API returns it,
// masked ("rtsp://admin:***@cam/stream").
import { messageOf, sendJson, sourcePath } from "./api.js";
import { $, byId, el } from "./dom.js";
import { MODE_LABELS, STATE_LABELS, label } from "./labels.js";
import { sourceName } from "./sources.js";

/**
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("../types/protocol").SourceSpec} SourceSpec
 * @typedef {import("../types/protocol").SourceKind} SourceKind
 * @typedef {import("../types/protocol").SourceMode} SourceMode
 * @typedef {import("./sources.js").SourceStore} SourceStore
 */

/** @type {Record<string, string>} what `uri` means for each kind */
const URI_HINTS = {
  stream: "Stream URL (RTSP, HTTP); the camera's substream, for detection and tiles",
  webcam: "Device index, for example 0",
  file: "Path of a video file on the detector's machine",
  test_pattern: "Not needed",
};

export class CamerasView {
  /** @param {SourceStore} store */
  constructor(store) {
    this.store = store;
    this.dialog = byId("cameras-dialog", HTMLDialogElement);
    this.form = byId("camera-form", HTMLFormElement);
    this.kind = byId("camera-kind", HTMLSelectElement);
    this.name = byId("camera-name", HTMLInputElement);
    this.id = byId("camera-id", HTMLInputElement);
    this.idTouched = false;
    $("cameras-open").addEventListener("click", () => this.open());
    $("cameras-close").addEventListener("click", () => this.dialog.close());
    this.kind.addEventListener("change", () => this.kindChanged());
    this.name.addEventListener("input", () => {
      if (!this.idTouched) this.id.value = slug(this.name.value);
    });
    this.id.addEventListener("input", () => { this.idTouched = this.id.value !== ""; });
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.add(); });
    store.subscribe((sources) => this.render(sources));
    this.kindChanged();
  }

  /**
   * What came of the last change, in the dialog (toasts would sit under a modal dialog).
   * @param {"success" | "error"} kind
   * @param {string} text
   */
  say(kind, text) {
    const status = $("cameras-status");
    status.dataset.kind = kind;
    status.textContent = text;
    status.hidden = false;
  }

  open() {
    $("cameras-status").hidden = true;
    this.dialog.showModal();
    this.store.refresh().catch((error) => this.say("error", `Could not list the cameras: ${messageOf(error)}`));
  }

  kindChanged() {
    const kind = this.kind.value;
    $("camera-uri-hint").textContent = URI_HINTS[kind] || "";
    byId("camera-uri", HTMLInputElement).required = kind !== "test_pattern";
    $("camera-record-field").hidden = kind !== "stream";
  }

  /** @param {Source[]} sources */
  render(sources) {
    const list = $("camera-list");
    list.replaceChildren(...sources.map((source) => this.row(source)));
    $("camera-list-empty").hidden = sources.length > 0;
  }

  /** @param {Source} source */
  row(source) {
    const spec = source.spec;
    const name = sourceName(source, spec.id);
    const mode = el("select", { "aria-label": `Mode of ${name}`, "data-testid": "camera-mode" },
      ...Object.entries(MODE_LABELS).map(([value, text]) => el("option", { value, text })));
    mode.value = spec.mode || "on_demand";
    mode.addEventListener("change", () => this.setMode(source, /** @type {SourceMode} */ (mode.value), mode));
    const remove = el("button", { type: "button", class: "danger", "data-testid": "camera-remove", text: "Remove" });
    remove.setAttribute("aria-label", `Remove ${name}`);
    remove.addEventListener("click", () => this.remove(source, remove));
    const address = el("dl", { class: "addresses" },
      el("dt", { text: "Address" }), el("dd", {}, el("code", { "data-testid": "camera-uri", text: spec.uri || "–" })));
    if (spec.record_uri) {
      address.append(el("dt", { text: "Recording" }), el("dd", {}, el("code", { "data-testid": "camera-record-uri", text: spec.record_uri })));
    }
    return el("li", { class: "camera-row", "data-testid": "camera-row", "data-source": spec.id },
      el("div", { class: "camera-head" },
        el("strong", { text: name }),
        el("span", { class: "muted small", text: `${spec.id} · ${(spec.kind || "").replace("_", " ")} · ${label(STATE_LABELS, source.state)}` })),
      address,
      el("div", { class: "row camera-actions" }, mode, remove));
  }

  async add() {
    const data = new FormData(this.form);
    const text = (/** @type {string} */ key) => String(data.get(key) || "").trim();
    /** @type {SourceSpec} */
    const spec = {
      id: text("id"),
      kind: /** @type {SourceKind} */ (text("kind")),
      uri: text("uri"),
      record_uri: text("record_uri"),
      display_name: text("display_name"),
      mode: /** @type {SourceMode} */ (text("mode")),
    };
    if (spec.kind !== "stream") spec.record_uri = "";
    const submit = byId("camera-add", HTMLButtonElement);
    submit.disabled = true;
    try {
      /** @type {Source} */
      const added = await sendJson("POST", "/api/sources", spec);
      // The typed address (and any password in it) leaves the page; the masked one stays.
      this.form.reset();
      this.idTouched = false;
      this.kindChanged();
      this.say("success", `Added ${sourceName(added, added.spec.id)}${added.spec.uri ? `: ${added.spec.uri}` : ""}`);
      await this.store.refresh();
      $("camera-list").querySelector(`[data-source="${CSS.escape(added.spec.id)}"]`)?.scrollIntoView({ block: "nearest" });
    } catch (error) {
      this.say("error", `Could not add the camera: ${messageOf(error)}`);
    } finally {
      submit.disabled = false;
    }
  }

  /**
   * @param {Source} source
   * @param {SourceMode} mode
   * @param {HTMLSelectElement} select
   */
  async setMode(source, mode, select) {
    select.disabled = true;
    try {
      await sendJson("PUT", sourcePath(source.spec.id), { ...source.spec, mode });
      this.say("success", `${sourceName(source, source.spec.id)}: ${MODE_LABELS[mode]}`);
    } catch (error) {
      select.value = source.spec.mode || "on_demand";
      this.say("error", `Could not change the mode of ${sourceName(source, source.spec.id)}: ${messageOf(error)}`);
    } finally {
      select.disabled = false;
      this.store.refresh().catch(() => {});
    }
  }

  /**
   * Two presses: the first asks, the second removes.
   * @param {Source} source
   * @param {HTMLButtonElement} button
   */
  async remove(source, button) {
    const name = sourceName(source, source.spec.id);
    if (button.dataset.confirm !== "true") {
      button.dataset.confirm = "true";
      button.textContent = "Confirm removal";
      setTimeout(() => { button.dataset.confirm = "false"; button.textContent = "Remove"; }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await sendJson("DELETE", sourcePath(source.spec.id));
      this.say("success", `Removed ${name}`);
    } catch (error) {
      this.say("error", `Could not remove ${name}: ${messageOf(error)}`);
    } finally {
      button.disabled = false;
      this.store.refresh().catch(() => {});
    }
  }
}

/** An id the API accepts, from a name: "Front door" -> "front-door". @param {string} name */
export function slug(name) {
  return name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
}
