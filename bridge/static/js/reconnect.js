// The reconnect policy both sockets follow. After a dropped connection: this many tries, the
// first after FIRST_RETRY_MS and each next one after twice as long (1 s, 2 s, 4 s), then the user
// starts again. The bridge serves its policy (VIGIL_BRIDGE_RECONNECT_*) on <body>; these defaults
// are the same as its own.

/**
 * @param {string} name a data- attribute of <body>, in camelCase
 * @param {number} fallback
 * @param {number} min
 */
function policyNumber(name, fallback, min) {
  const value = Number(document.body.dataset[name]);
  return Number.isFinite(value) && value >= min ? value : fallback;
}

export const MAX_RECONNECTS = Math.floor(policyNumber("reconnectTries", 3, 0));
export const FIRST_RETRY_MS = policyNumber("reconnectInitialMs", 1000, 1);

/**
 * How long to wait before the next try, when `attempts` tries have been made already.
 * @param {number} attempts
 */
export function retryDelay(attempts) {
  return FIRST_RETRY_MS * 2 ** attempts;
}
