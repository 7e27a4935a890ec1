// Globals the page adds to the browser's.

interface Window {
  /** The page's views, for debugging in the console (set by js/main.js). */
  vigil: {
    live: import("../js/live.js").LiveView;
    analysis: import("../js/analysis.js").AnalysisView;
  };
}
