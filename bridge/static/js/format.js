// Formatting shared by the views.

/**
 * Seconds as mm:ss (minutes keep counting past 59, as the analyzer's [mm:ss] citations do).
 * @param {number | undefined} seconds
 */
export function clock(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const minutes = Math.floor(total / 60);
  return `${String(minutes).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}
