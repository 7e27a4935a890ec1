// The bridge's address book: the optional bearer token, WebSocket URLs and error texts of its
// HTTP answers.

// An optional bearer token: open the page once as /?token=..., it is kept for the tab's life.
export const TOKEN = (() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem("vigil-token", given);
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }
  return given || sessionStorage.getItem("vigil-token") || "";
})();

/** @returns {Record<string, string>} */
export function authHeaders() {
  return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
}

/**
 * A ws:// (or wss:// under https) URL of the bridge, with the token when there is one.
 * @param {string} path
 * @param {Record<string, string>} [params]
 */
export function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  if (TOKEN) url.searchParams.set("token", TOKEN);
  return url.toString();
}

/**
 * What went wrong, from a failed response: the bridge's {code, message}, FastAPI's {detail}, or
 * the status line.
 * @param {Response} response
 * @returns {Promise<string>}
 */
export async function errorText(response) {
  try {
    /** @type {import("../types/protocol").ErrorBody | null} */
    const body = await response.json();
    if (body && body.message) return body.code ? `${body.message} (${body.code})` : body.message;
    if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch { /* not JSON */ }
  return `${response.status} ${response.statusText}`.trim();
}
