// The bridge's REST API as the views use it: JSON in and out with the token, failures as Errors
// carrying the bridge's own words (its {code, message}) and the HTTP status.
import { TOKEN, authHeaders, errorText } from "./net.js";

/**
 * @typedef {import("../types/protocol").Source} Source
 * @typedef {import("../types/protocol").SourceSpec} SourceSpec
 * @typedef {import("../types/protocol").SourceList} SourceList
 */

export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
async function call(path, init = {}) {
  const headers = { ...authHeaders(), ...(init.body ? { "Content-Type": "application/json" } : {}) };
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) throw new ApiError(await errorText(response), response.status);
  return response;
}

/**
 * GET a JSON answer.
 * @template T
 * @param {string} path
 * @param {Record<string, string>} [params] empty values are left out
 * @returns {Promise<T>}
 */
export async function getJson(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== ""));
  const text = query.toString();
  return (await call(text ? `${path}?${text}` : path)).json();
}

/**
 * POST, PUT or DELETE, with a JSON body when one is given; the JSON answer.
 * @template T
 * @param {"POST" | "PUT" | "DELETE"} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<T>}
 */
export async function sendJson(method, path, body) {
  const init = body === undefined ? { method } : { method, body: JSON.stringify(body) };
  return (await call(path, init)).json();
}

/** @param {string} id */
export const sourcePath = (id) => `/api/sources/${encodeURIComponent(id)}`;

/**
 * A range of a source's recording as one MP4 (the bridge answers range requests, so a <video>
 * given this URL seeks without loading it all).
 * @param {string} sourceId
 * @param {Date} start
 * @param {Date} end
 */
export function recordingUrl(sourceId, start, end) {
  const params = new URLSearchParams({ start: start.toISOString(), end: end.toISOString() });
  return `${sourcePath(sourceId)}/recording.mp4?${params}`;
}

/**
 * What the detector found on a source's recorded frames from `start` to `end`.
 * @param {string} sourceId
 * @param {Date} start
 * @param {Date} end
 * @returns {Promise<import("../types/protocol").RecordedDetections>}
 */
export function recordedDetections(sourceId, start, end) {
  return getJson(`${sourcePath(sourceId)}/detections`, { start: start.toISOString(), end: end.toISOString() });
}

/**
 * A URL a <video> can play: the URL itself, or, when the bridge wants a token (which media
 * elements cannot send as a header), the file fetched with it as a blob: URL.
 * @param {string} url
 */
export async function playableUrl(url) {
  if (!TOKEN) return url;
  return URL.createObjectURL(await (await call(url)).blob());
}

/**
 * A source's newest frame (or its picture at `at`) as a blob: URL for an <img>; null when the
 * bridge has none to give (no frame yet, or no snapshot endpoint).
 * @param {string} sourceId
 * @param {Date} [at]
 * @returns {Promise<string | null>}
 */
export async function snapshotBlobUrl(sourceId, at) {
  const query = at ? `?${new URLSearchParams({ at: at.toISOString() })}` : "";
  const response = await fetch(`${sourcePath(sourceId)}/snapshot.jpg${query}`, { headers: authHeaders() });
  if (!response.ok) return null;
  return URL.createObjectURL(await response.blob());
}

/** The message of anything thrown. @param {unknown} error */
export const messageOf = (error) => (error instanceof Error && error.message ? error.message : String(error));
