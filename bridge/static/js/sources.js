// The detector's sources, shared by every view: loaded from GET /api/sources, again every few
// seconds while the page is in view (states, camera problems and the recording dot change by
// themselves), and at once after a view changes one. Views subscribe and are told the new list.
import { getJson } from "./api.js";

/**
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("../types/protocol").SourceList} SourceList
 * @typedef {(sources: Source[]) => void} Listener
 */

const REFRESH_MS = 5000;

export class SourceStore {
  constructor() {
    /** @type {Source[]} */
    this.sources = [];
    /** @type {Listener[]} */
    this.listeners = [];
    this.loaded = false;
    /** @type {Promise<Source[]> | null} */
    this.inFlight = null;
    setInterval(() => { if (!document.hidden) this.refresh().catch(() => {}); }, REFRESH_MS);
  }

  /** @param {Listener} listener called now (when loaded) and on every change */
  subscribe(listener) {
    this.listeners.push(listener);
    if (this.loaded) listener(this.sources);
  }

  /**
   * Load the list now (one request however many ask at once); throws what the bridge said.
   * @returns {Promise<Source[]>}
   */
  refresh() {
    if (!this.inFlight) {
      this.inFlight = getJson("/api/sources")
        .then((/** @type {SourceList} */ answer) => {
          this.sources = answer.sources;
          this.loaded = true;
          for (const listener of this.listeners) listener(this.sources);
          return this.sources;
        })
        .finally(() => { this.inFlight = null; });
    }
    return this.inFlight;
  }

  /** @param {string} id */
  get(id) {
    return this.sources.find((s) => s.spec.id === id);
  }
}

/** A source's name for people: its display name, else its id. @param {Source | undefined} source @param {string} id */
export function sourceName(source, id) {
  return (source && source.spec.display_name) || id;
}
