// Vigil's page: the camera grid, the live view of one camera (with its zones), incidents, the
// recordings timeline and an analysis session for uploaded videos and ranges of recordings. Native ES modules, no build
// step: this entry module starts the views; each view and each shared part (DOM helpers, the
// bridge's API and URLs, the sources list, the live feed, toasts, the reconnect policy) is a
// module of its own beside it. `make lint` type-checks them all (tsconfig.json, JSDoc types).
import { AnalysisView } from "./analysis.js";
import { CamerasView } from "./cameras.js";
import { Feed } from "./feed.js";
import { GridView } from "./grid.js";
import { IncidentsView } from "./incidents.js";
import { LiveView } from "./live.js";
import { RulesView } from "./rules.js";
import { SourceStore } from "./sources.js";
import { setupTabs, showTab } from "./tabs.js";
import { TimelineView } from "./timeline.js";
import { ZoneEditor } from "./zones.js";

setupTabs();
const sources = new SourceStore();
const feed = new Feed();
const live = new LiveView(sources);
const analysis = new AnalysisView();
// Exposed for debugging in the console and for the end-to-end test's diagnostics.
window.vigil = {
  live,
  analysis,
  grid: new GridView(sources, (id) => { showTab("live"); live.watch(id); }),
  cameras: new CamerasView(sources),
  incidents: new IncidentsView(sources, feed, () => showTab("incidents")),
  timeline: new TimelineView(sources, (range) => { showTab("analysis"); analysis.analyzeRecording(range); }),
  zones: new ZoneEditor(sources, live),
  rules: new RulesView(sources, live),
  sources,
  feed,
};
