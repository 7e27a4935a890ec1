// Globals the page adds to the browser's.

interface Window {
  /** The page's views, for debugging in the console (set by js/main.js). */
  vigil: {
    live: import("../js/live.js").LiveView;
    analysis: import("../js/analysis.js").AnalysisView;
    grid: import("../js/grid.js").GridView;
    cameras: import("../js/cameras.js").CamerasView;
    incidents: import("../js/incidents.js").IncidentsView;
    timeline: import("../js/timeline.js").TimelineView;
    zones: import("../js/zones.js").ZoneEditor;
    rules: import("../js/rules.js").RulesView;
    sources: import("../js/sources.js").SourceStore;
    feed: import("../js/feed.js").Feed;
  };
}
