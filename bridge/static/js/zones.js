// Zones and lines on the live view: the camera's zones drawn over its picture, and an editor that
// places points where the picture is clicked (an area: three or more corners; a line: A then B,
// "in" meaning from the left of A→B to its right, as the detector counts it), with a name, the
// classes that count, a loitering time (areas) and a direction (lines). Motion masks are drawn
// like areas: changes inside them (a clock overlay, a tree) never wake the detector; with them go
// the camera's motion sensitivity and "detect every frame". "Save zones" sends the source's spec
// with its new zones and motion settings (PUT /api/sources/{id}); coordinates are normalised.
//
// The overlay is an SVG whose viewBox is the frame's size, laid over the canvas and letterboxed
// the same way (xMidYMid meet = object-fit: contain), so a click maps to the frame's pixels.
import { messageOf, sendJson, sourcePath } from "./api.js";
import { $, byId, el } from "./dom.js";
import { sourceName } from "./sources.js";
import { toast } from "./toast.js";

/**
 * @typedef {import("../types/protocol").Zone} Zone
 * @typedef {import("../types/protocol").MotionSettings} MotionSettings
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("./sources.js").SourceStore} SourceStore
 * @typedef {import("./live.js").LiveView} LiveView
 */

const SVG = "http://www.w3.org/2000/svg";

export class ZoneEditor {
  /**
   * @param {SourceStore} store
   * @param {LiveView} live
   */
  constructor(store, live) {
    this.store = store;
    this.live = live;
    this.svg = byId("zone-overlay", SVGSVGElement);
    this.form = byId("zone-form", HTMLFormElement);
    this.kind = byId("zone-kind", HTMLSelectElement);
    this.editButton = byId("zones-edit", HTMLButtonElement);
    this.saveButton = byId("zones-save", HTMLButtonElement);
    this.sensitivity = byId("motion-sensitivity", HTMLInputElement);
    this.everyFrame = byId("motion-every-frame", HTMLInputElement);
    /** @type {string} the source whose zones are shown */
    this.sourceId = "";
    /** @type {Zone[]} the zones as edited (saved ones until a change) */
    this.zones = [];
    /** @type {MotionSettings} the motion settings as edited */
    this.motion = copyMotion(undefined);
    this.dirty = false;
    this.editing = false;
    /** @type {[number, number][]} the shape being placed */
    this.points = [];
    this.size = { width: 1280, height: 720 };
    live.onSize = (width, height) => { this.size = { width, height }; this.draw(); };
    // Shown (the stream went live) or resized: labels and handles are sized for the screen.
    new ResizeObserver(() => this.draw()).observe(this.svg);
    live.select.addEventListener("change", () => this.follow());
    store.subscribe(() => { if (!this.dirty) this.follow(true); });
    this.editButton.addEventListener("click", () => this.setEditing(!this.editing));
    this.svg.addEventListener("click", (event) => this.place(event));
    this.kind.addEventListener("change", () => this.kindChanged());
    $("zone-undo").addEventListener("click", () => { this.points.pop(); this.draw(); });
    $("zone-clear").addEventListener("click", () => { this.points = []; this.draw(); });
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.addZone(); });
    this.saveButton.addEventListener("click", () => this.save());
    this.sensitivity.addEventListener("input", () => this.motionChanged());
    this.everyFrame.addEventListener("change", () => this.motionChanged());
    this.kindChanged();
    this.follow();
  }

  /**
   * Show the zones of the source the live view shows.
   * @param {boolean} [quiet] a refresh of the same source: keep the editor as it is
   */
  follow(quiet = false) {
    const id = this.live.select.value;
    if (quiet && id === this.sourceId) {
      if (!this.dirty) this.load();
      this.render();
      return;
    }
    this.sourceId = id;
    this.load();
    this.dirty = false;
    this.points = [];
    if (!id) this.setEditing(false);
    this.render();
  }

  /** Take the source's saved zones and motion settings, to edit. */
  load() {
    const source = this.store.get(this.sourceId);
    this.zones = copyZones(source);
    this.motion = copyMotion(source);
    this.sensitivity.value = String(this.motion.sensitivity);
    this.everyFrame.checked = this.motion.detect_every_frame;
  }

  motionChanged() {
    this.motion = { ...this.motion, sensitivity: Number(this.sensitivity.value), detect_every_frame: this.everyFrame.checked };
    this.dirty = true;
    this.render();
  }

  /** @param {boolean} on */
  setEditing(on) {
    this.editing = on && Boolean(this.sourceId);
    this.editButton.setAttribute("aria-pressed", String(this.editing));
    this.editButton.textContent = this.editing ? "Done drawing" : "Draw zones";
    this.form.hidden = !this.editing;
    this.svg.dataset.editing = String(this.editing);
    this.points = [];
    this.render();
  }

  kindChanged() {
    const line = this.kind.value === "line";
    const mask = this.kind.value === "mask";
    $("zone-loiter-field").hidden = line || mask;
    $("zone-direction-field").hidden = !line;
    // A mask has no name or classes: its name field must not hold the form back either.
    $("zone-name-field").hidden = $("zone-classes-field").hidden = mask;
    byId("zone-name", HTMLInputElement).disabled = mask;
    byId("zone-add", HTMLButtonElement).textContent = mask ? "Add mask" : "Add zone";
    if (line && this.points.length > 2) this.points = this.points.slice(0, 2);
    this.render();
  }

  /** @param {MouseEvent} event */
  place(event) {
    if (!this.editing) return;
    const matrix = this.svg.getScreenCTM();
    if (!matrix) return;
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
    const x = point.x / this.size.width;
    const y = point.y / this.size.height;
    if (x < 0 || x > 1 || y < 0 || y > 1) return; // on the letterbox, not the picture
    if (this.kind.value === "line" && this.points.length >= 2) this.points = [];
    this.points.push([round(x), round(y)]);
    this.draw();
  }

  addZone() {
    if (this.kind.value === "mask") {
      this.addMask();
      return;
    }
    const line = this.kind.value === "line";
    const name = byId("zone-name", HTMLInputElement).value.trim();
    const need = line ? 2 : 3;
    if (this.points.length < need) {
      toast("warning", `Place ${line ? "both ends of the line" : "at least three corners"} first`, "Click the picture where they go.");
      return;
    }
    if (this.zones.some((z) => z.name === name)) {
      toast("warning", `There is already a zone called ${name}`, "Names are unique within a camera.");
      return;
    }
    const classes = byId("zone-classes", HTMLInputElement).value.split(",").map((c) => c.trim()).filter(Boolean);
    const direction = byId("zone-direction", HTMLSelectElement).value;
    this.zones.push({
      name,
      kind: line ? "line" : "area",
      points: this.points,
      classes,
      loiter_s: line ? 0 : Number(byId("zone-loiter", HTMLInputElement).value) || 0,
      direction: line && (direction === "in" || direction === "out") ? direction : null,
    });
    this.points = [];
    this.dirty = true;
    this.form.reset();
    this.kindChanged();
    this.render();
  }

  addMask() {
    if (this.points.length < 3) {
      toast("warning", "Place at least three corners first", "Click the picture around the area to ignore.");
      return;
    }
    this.motion = { ...this.motion, masks: [...this.motion.masks, this.points] };
    this.points = [];
    this.dirty = true;
    this.render();
  }

  /** @param {number} index */
  removeMask(index) {
    this.motion = { ...this.motion, masks: this.motion.masks.filter((_, n) => n !== index) };
    this.dirty = true;
    this.render();
  }

  /** @param {string} name */
  removeZone(name) {
    this.zones = this.zones.filter((z) => z.name !== name);
    this.dirty = true;
    this.render();
  }

  async save() {
    const source = this.store.get(this.sourceId);
    if (!source) return;
    this.saveButton.disabled = true;
    try {
      await sendJson("PUT", sourcePath(source.spec.id), { ...source.spec, zones: this.zones, motion: this.motion });
      this.dirty = false;
      this.setEditing(false);
      toast("success", `Zones saved for ${sourceName(source, source.spec.id)}`, `${this.counts()}.`);
      await this.store.refresh();
    } catch (error) {
      toast("error", "Could not save the zones", messageOf(error));
    } finally {
      this.render();
    }
  }

  render() {
    const source = this.store.get(this.sourceId);
    $("zones-hint").textContent = !this.sourceId
      ? "Choose a camera above to see and draw its zones."
      : this.editing
        ? this.kind.value === "mask"
          ? "Click the picture around an area whose changes should not count as motion, then add the mask."
          : "Click the picture to place points, then name the zone and add it."
        : `${sourceName(source, this.sourceId)}: ${this.counts()}${this.dirty ? " (not saved)" : ""}.`;
    this.editButton.disabled = !this.sourceId;
    this.saveButton.disabled = !this.dirty;
    $("motion-settings").hidden = !this.sourceId;
    $("motion-sensitivity-value").textContent = this.motion.sensitivity ? this.motion.sensitivity.toFixed(2) : "default";
    const masks = this.motion.masks.map((_, n) => {
      const remove = el("button", { type: "button", class: "link-button", text: "Remove" });
      remove.setAttribute("aria-label", `Remove motion mask ${n + 1}`);
      remove.addEventListener("click", () => this.removeMask(n));
      return el("li", { "data-testid": "mask-row" },
        el("span", { class: "swatch", "data-kind": "mask", "aria-hidden": "true" }),
        el("span", {}, el("strong", { text: `Motion mask ${n + 1}` }), el("span", { class: "muted small", text: " · changes here are ignored" })),
        remove);
    });
    $("zone-list").replaceChildren(...this.zones.map((zone) => {
      const remove = el("button", { type: "button", class: "link-button", text: "Remove" });
      remove.setAttribute("aria-label", `Remove zone ${zone.name}`);
      remove.addEventListener("click", () => this.removeZone(zone.name));
      const what = zone.kind === "line"
        ? `line · ${zone.direction ? `counts ${zone.direction}` : "both ways"}`
        : `area${zone.loiter_s ? ` · loitering after ${zone.loiter_s} s` : ""}`;
      const classes = zone.classes.length ? zone.classes.join(", ") : "every class";
      return el("li", { "data-testid": "zone-row", "data-zone": zone.name },
        el("span", { class: "swatch", "data-kind": zone.kind, "aria-hidden": "true" }),
        el("span", {}, el("strong", { text: zone.name }), el("span", { class: "muted small", text: ` ${what} · ${classes}` })),
        remove);
    }), ...masks);
    this.draw();
  }

  /** "2 zones, 1 motion mask": what the camera has, as edited. */
  counts() {
    const zones = `${this.zones.length} zone${this.zones.length === 1 ? "" : "s"}`;
    const masks = this.motion.masks.length;
    return masks ? `${zones}, ${masks} motion mask${masks === 1 ? "" : "s"}` : zones;
  }

  /** The zones and the shape being placed, over the picture. */
  draw() {
    const { width, height } = this.size;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    // Labels and handles keep their size on screen, whatever the frame's size and the screen's.
    const box = this.svg.getBoundingClientRect();
    const unit = box.width ? 1 / Math.min(box.width / width, box.height / height) : 1;
    const px = (/** @type {[number, number][]} */ points) => points.map(([x, y]) => `${x * width},${y * height}`).join(" ");
    /** @type {SVGElement[]} */
    const shapes = [];
    this.motion.masks.forEach((mask, n) => {
      const [x, y] = mask[0];
      const label = svg("text", { x: String(x * width + 6 * unit), y: String(y * height + 18 * unit), class: "zone-label", "font-size": String(14 * unit), "stroke-width": String(3 * unit) });
      label.textContent = `mask ${n + 1}`;
      shapes.push(svg("polygon", { points: px(mask), class: "zone mask" }), label);
    });
    for (const zone of this.zones) {
      const shape = svg(zone.kind === "line" ? "polyline" : "polygon", { points: px(zone.points), class: `zone ${zone.kind}` });
      if (zone.kind === "line") shape.setAttribute("marker-end", "url(#zone-arrow)");
      const [x, y] = zone.points[0];
      const name = svg("text", { x: String(x * width + 6 * unit), y: String(y * height - 6 * unit), class: "zone-label", "font-size": String(14 * unit), "stroke-width": String(3 * unit) });
      name.textContent = zone.name;
      shapes.push(shape, name);
    }
    if (this.points.length) {
      const line = this.kind.value === "line";
      shapes.push(svg(line || this.points.length < 3 ? "polyline" : "polygon", { points: px(this.points), class: "zone draft" }));
      for (const [x, y] of this.points) shapes.push(svg("circle", { cx: String(x * width), cy: String(y * height), r: String(5 * unit), class: "zone-point" }));
    }
    const defs = svg("defs", {});
    const arrow = svg("marker", { id: "zone-arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" });
    arrow.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "zone-arrow" }));
    // Masks are hatched, so they read as "not watched" rather than as one more zone.
    const hatch = svg("pattern", { id: "mask-hatch", width: String(10 * unit), height: String(10 * unit), patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    hatch.append(svg("line", { x1: "0", y1: "0", x2: "0", y2: String(10 * unit), class: "mask-hatch", "stroke-width": String(3 * unit) }));
    defs.append(arrow, hatch);
    this.svg.replaceChildren(defs, ...shapes);
    $("zone-points").textContent = `${this.points.length} point${this.points.length === 1 ? "" : "s"} placed`;
  }
}

/**
 * @param {string} tag
 * @param {Record<string, string>} attributes
 */
function svg(tag, attributes) {
  const node = /** @type {SVGElement} */ (document.createElementNS(SVG, tag));
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

/** @param {number} value */
const round = (value) => Math.round(value * 10000) / 10000;

/** A copy of a source's saved zones, to edit. @param {Source | undefined} source @returns {Zone[]} */
function copyZones(source) {
  return ((source && source.spec.zones) || []).map((z) => ({ ...z, points: z.points.map(([x, y]) => /** @type {[number, number]} */ ([x, y])), classes: [...z.classes] }));
}

/** A copy of a source's motion settings, to edit. @param {Source | undefined} source @returns {MotionSettings} */
function copyMotion(source) {
  const motion = source && source.spec.motion;
  return {
    detect_every_frame: Boolean(motion && motion.detect_every_frame),
    sensitivity: (motion && motion.sensitivity) || 0,
    masks: ((motion && motion.masks) || []).map((mask) => mask.map(([x, y]) => /** @type {[number, number]} */ ([x, y]))),
  };
}
