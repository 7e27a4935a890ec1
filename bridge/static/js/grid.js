// The camera grid: a small tile per source with its picture, state, camera problems and a
// recording dot; a tile opens the source's full live stream (the live view, with boxes).
//
// Tiles show GET /api/sources/{id}/snapshot.jpg (the newest live frame) reloaded every
// TILE_REFRESH_MS, not a video WebSocket each: a WebSocket sends every frame (15 a second) for
// the browser to decode, so sixteen tiles would move and decode 240 JPEGs a second on a small
// box, where snapshots cost one small request a tile every few seconds, and only while the grid
// is on screen. On-demand sources are not woken by the grid: their tile says so until someone
// opens them.
import { messageOf, snapshotBlobUrl } from "./api.js";
import { $, el } from "./dom.js";
import { EVENT_LABELS, MODE_LABELS, STATE_LABELS, label } from "./labels.js";
import { sourceName } from "./sources.js";

/**
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("./sources.js").SourceStore} SourceStore
 */

const TILE_REFRESH_MS = 2000;

export class GridView {
  /**
   * @param {SourceStore} store
   * @param {(sourceId: string) => void} watch opens a source's live stream
   */
  constructor(store, watch) {
    this.store = store;
    this.watch = watch;
    this.grid = $("camera-grid");
    /** @type {Map<string, {node: HTMLElement, img: HTMLImageElement, loading: boolean, url: string}>} */
    this.tiles = new Map();
    store.subscribe((sources) => this.render(sources));
    setInterval(() => this.refreshPictures(), TILE_REFRESH_MS);
  }

  get visible() {
    return !document.hidden && !$("panel-cameras").hidden;
  }

  /** @param {Source[]} sources */
  render(sources) {
    const live = sources.filter((s) => s.state === "live").length;
    const recording = sources.filter((s) => s.recording).length;
    $("grid-summary").textContent = `${sources.length} camera${sources.length === 1 ? "" : "s"} · ${live} live · ${recording} recording`;
    $("grid-empty").hidden = sources.length > 0;
    const seen = new Set();
    for (const source of sources) {
      const id = source.spec.id;
      seen.add(id);
      let tile = this.tiles.get(id);
      if (!tile) {
        tile = this.makeTile(id);
        this.tiles.set(id, tile);
      }
      this.grid.append(tile.node); // keeps the API's order
      this.update(tile.node, source);
    }
    for (const [id, tile] of this.tiles) {
      if (seen.has(id)) continue;
      tile.node.remove();
      if (tile.url) URL.revokeObjectURL(tile.url);
      this.tiles.delete(id);
    }
    this.refreshPictures();
  }

  /** @param {string} id */
  makeTile(id) {
    const img = el("img", { class: "tile-image", alt: "" });
    img.hidden = true;
    const open = el("button", { type: "button", class: "tile-open" },
      img,
      el("span", { class: "tile-placeholder" }),
      el("span", { class: "tile-top" },
        el("span", { class: "badge state" }),
        el("span", { class: "rec", "aria-hidden": "true", title: "Recording" })),
      el("span", { class: "tile-bottom" },
        el("span", { class: "tile-name" }),
        el("span", { class: "tile-problems" })));
    open.addEventListener("click", () => this.watch(id));
    const node = el("li", { class: "tile", "data-testid": "camera-tile", "data-source": id }, open);
    return { node, img, loading: false, url: "" };
  }

  /**
   * @param {HTMLElement} node
   * @param {Source} source
   */
  update(node, source) {
    const name = sourceName(source, source.spec.id);
    const state = label(STATE_LABELS, source.state);
    const problems = (source.camera_problems || []).map((p) => label(EVENT_LABELS, p));
    node.dataset.state = source.state;
    node.dataset.recording = String(Boolean(source.recording));
    node.dataset.problems = String(problems.length > 0);
    const q = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (node.querySelector(selector));
    q(".tile-name").textContent = name;
    const badge = q(".badge.state");
    badge.textContent = state;
    badge.dataset.state = source.state;
    q(".rec").hidden = !source.recording;
    q(".tile-problems").replaceChildren(...problems.map((p) => el("span", { class: "badge problem", "data-testid": "camera-problem", text: p })));
    const idleOnDemand = source.spec.mode === "on_demand" && source.state !== "live";
    q(".tile-placeholder").textContent = idleOnDemand
      ? `${MODE_LABELS.on_demand} · open to watch`
      : source.state === "failed" ? source.last_error || "Failed" : "No picture yet";
    const words = [name, state, ...problems, source.recording ? "recording" : ""].filter(Boolean);
    q(".tile-open").setAttribute("aria-label", `${words.join(", ")}. Watch live`);
    if (idleOnDemand || source.state === "failed") this.showPicture(source.spec.id, null);
  }

  refreshPictures() {
    if (!this.visible) return;
    for (const source of this.store.sources) {
      const tile = this.tiles.get(source.spec.id);
      if (!tile || tile.loading || source.state !== "live") continue;
      tile.loading = true;
      snapshotBlobUrl(source.spec.id)
        .then((url) => { if (url) this.showPicture(source.spec.id, url); }) // none: keep the last
        .catch((error) => console.debug("tile picture", source.spec.id, messageOf(error)))
        .finally(() => { tile.loading = false; });
    }
  }

  /**
   * @param {string} id
   * @param {string | null} url a blob: URL, or null for none
   */
  showPicture(id, url) {
    const tile = this.tiles.get(id);
    if (!tile) { if (url) URL.revokeObjectURL(url); return; }
    if (url === null && !tile.url) return;
    if (tile.url) URL.revokeObjectURL(tile.url);
    tile.url = url || "";
    tile.img.hidden = !url;
    if (url) tile.img.src = url;
    else tile.img.removeAttribute("src");
  }
}
