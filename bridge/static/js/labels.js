// Words for the API's names, shared by the views.

/** @type {Record<string, string>} */
export const STATE_LABELS = {
  idle: "Idle", starting: "Starting", live: "Live", reconnecting: "Reconnecting",
  stopped: "Stopped", failed: "Failed",
};

/** @type {Record<string, string>} */
export const EVENT_LABELS = {
  zone_enter: "Entered", zone_leave: "Left", zone_loiter: "Loitering", line_cross: "Crossed",
  camera_frozen: "Frozen picture", camera_covered: "Covered", camera_defocused: "Out of focus",
  camera_moved: "Camera moved",
};

/** @type {Record<string, string>} */
export const MODE_LABELS = { always: "Always", on_demand: "On demand" };

/** @param {Record<string, string>} labels @param {string} name */
export const label = (labels, name) => labels[name] || name.replace(/_/g, " ");

/** A time as people read it, in their own zone: "14:03:07" today, else with the date. @param {string | Date | null | undefined} when */
export function when(when) {
  if (!when) return "–";
  const date = when instanceof Date ? when : new Date(when);
  if (Number.isNaN(date.getTime())) return "–";
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString([], { hour12: false })
    : date.toLocaleString([], { hour12: false, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
