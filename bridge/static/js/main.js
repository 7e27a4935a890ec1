// Vigil's page: a live view of the detector's cameras and an analysis session for uploaded
// videos. Native ES modules, no build step: this entry module starts the views; each view and
// each shared part (DOM helpers, the bridge's URLs and token, toasts, the reconnect policy) is a
// module of its own beside it. `make lint` type-checks them all (tsconfig.json, JSDoc types).
import { AnalysisView } from "./analysis.js";
import { LiveView } from "./live.js";
import { setupTabs } from "./tabs.js";

setupTabs();
// Exposed for debugging in the console and for the end-to-end test's diagnostics.
window.vigil = { live: new LiveView(), analysis: new AnalysisView() };
