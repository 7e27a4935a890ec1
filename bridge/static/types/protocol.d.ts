// What the bridge sends the page (see bridge/app.py and its routers). Everything arrives as JSON
// from the network, so a field the page must not take for granted is optional here.

/** An HTTP error: the bridge's own {code, message}, or FastAPI's {detail}. */
export interface ErrorBody {
  code?: string;
  message?: string;
  detail?: unknown;
}

/** GET /api/sources */
export interface SourceList {
  sources: Source[];
}

export type SourceKind = "webcam" | "stream" | "file" | "test_pattern";
export type SourceMode = "on_demand" | "always";

/** A source as declared (POST /api/sources, PUT /api/sources/{id}); answers mask the
 * credentials of `uri` and `record_uri` ("rtsp://user:***@host/..."). */
export interface SourceSpec {
  id: string;
  kind?: SourceKind;
  uri?: string;
  record_uri?: string;
  display_name?: string;
  mode?: SourceMode | null;
  loop?: boolean;
  max_fps?: number;
  width?: number;
  height?: number;
  zones?: Zone[];
  incident_zones?: string[];
  motion?: MotionSettings;
  retention_days?: number;
  watch_rules?: WatchRule[];
  /** IANA time zone the rules' times are read in; empty: the detector's */
  time_zone?: string;
  [more: string]: unknown;
}

/** A situation in plain language the language model watches for on a camera. */
export interface WatchRule {
  id: string;
  condition: string;
  classes: string[];
  zones: string[];
  min_dwell_s: number;
  motion: boolean;
  check_interval_s: number;
  budget_per_hour: number;
  incident_kind: string;
  /** "HH:MM" in the camera's time zone; both empty: always */
  active_start: string;
  active_end: string;
  disabled: boolean;
}

/** What a watch rule has done since the detector started. */
export interface WatchRuleStatus {
  rule_id: string;
  candidates: number;
  checks: number;
  matches: number;
  held_back: number;
  model_seconds: number;
  last_reason: string;
  last_error: string;
}

export interface Source {
  spec: SourceSpec;
  /** idle, starting, live, reconnecting, stopped, failed */
  state: string;
  last_error?: string;
  state_since?: string | null;
  counters?: Record<string, number>;
  /** camera-health problems present now, e.g. "camera_covered" */
  camera_problems?: string[];
  /** being recorded now */
  recording?: boolean;
  /** what each of spec.watch_rules has done */
  watch_rule_status?: WatchRuleStatus[];
}

/** A named area (3+ points) or line (2 points, A then B), normalised 0..1 coordinates. */
export interface Zone {
  name: string;
  kind: "area" | "line";
  points: [number, number][];
  classes: string[];
  loiter_s: number;
  /** lines: the direction that raises events; null means both */
  direction: "in" | "out" | null;
}

/** How motion gates a source's object detector. */
export interface MotionSettings {
  /** detect on every frame, without motion gating */
  detect_every_frame: boolean;
  /** 0..1, higher sees smaller changes as motion; 0 means the detector's default */
  sensitivity: number;
  /** areas whose changes are ignored (a clock overlay, a tree): polygons of 3+ normalised points */
  masks: [number, number][][];
}

/** GET /api/incidents */
export interface IncidentPage {
  incidents: Incident[];
  next_page_token: string;
}

export interface Incident {
  id: string;
  source_id: string;
  class_name: string;
  opened_at: string | null;
  closed_at: string | null;
  peak_confidence: number;
  detections?: Detection[];
  clip_path?: string;
  /** the part of the recording that shows it (end null while open) */
  recording?: TimeRange | null;
  zones?: string[];
  /** an operator's review; null until reviewed */
  review?: Review | null;
  /** the language model's check: "pending", "done", "skipped" ("unspecified": off) */
  verification_state?: string;
  verification?: Verification | null;
  /** dismissed by an operator, or rejected by the model and not confirmed; kept */
  false_alarm?: boolean;
}

/** An operator's judgement of an incident (POST /api/incidents/{id}/review). */
export interface Review {
  decision: "confirmed" | "dismissed" | string;
  note: string;
  reviewer: string;
  reviewed_at: string | null;
}

/** GET /api/incidents/stats: one row per source, class and watch rule. */
export interface IncidentStats {
  source_id: string;
  class_name: string;
  /** empty for weapon incidents */
  rule_id: string;
  incidents: number;
  false_alarms: number;
  confirmed: number;
  dismissed: number;
  rejected: number;
  false_alarm_rate: number;
}

export interface IncidentStatsList {
  stats: IncidentStats[];
}

/** The language model's verdict on an incident. */
export interface Verification {
  verdict: "confirmed" | "rejected" | "uncertain" | string;
  sees: string;
  threat_level: number;
  reason: string;
  model: string;
  model_seconds: number;
}

export interface TimeRange {
  start: string | null;
  end: string | null;
}

/** A zone or camera-health event (GET /api/events, the live feed). */
export interface SourceEvent {
  id: string;
  source_id: string;
  /** zone_enter, zone_leave, zone_loiter, line_cross, camera_frozen, camera_covered, ... */
  kind: string;
  at: string | null;
  zone: string;
  class_name: string;
  /** 0 for camera-health events */
  track_id: number;
  direction: "in" | "out" | null;
  cleared: boolean;
  detail: string;
  has_snapshot: boolean;
}

/** GET /api/events */
export interface EventPage {
  events: SourceEvent[];
  next_page_token?: string;
}

/** GET /api/sources/{id}/coverage?start=&end= */
export interface Coverage {
  ranges: TimeRange[];
  bytes: number;
}

/** /ws/incidents: the live feed, JSON text messages. */
export interface FeedIncident {
  type: "incident";
  event: "opened" | "closed" | "verified" | "reviewed" | string;
  incident: Incident;
  /** base64 JPEG of the frame that opened it */
  snapshot: string | null;
  /** this event alerts people under the source's alert policy: the page toasts it */
  alert?: boolean;
}

export interface FeedSourceEvent {
  type: "source_event";
  event: SourceEvent;
  snapshot: string | null;
}

/** Messages were dropped for this browser (it read too slowly): reload the lists. */
export interface FeedGap {
  type: "gap";
  dropped: number;
}

/** The detector's stream failed; the bridge follows it again. */
export interface FeedError {
  type: "error";
  code: string;
  message: string;
}

export type FeedMessage = FeedIncident | FeedSourceEvent | FeedGap | FeedError;

/** /ws/video-stream?format=binary: the JSON header before each JPEG (or the whole frame, base64,
 * in the JSON format). */
export interface FrameHeader {
  type: "frame";
  timestamp: number;
  sequence?: number;
  dropped?: number;
  latency?: number;
  data?: string;
}

/** /ws/video-stream: a problem with the stream, as a text message. */
export interface StreamError {
  type: "error";
  code: string;
  message: string;
}

export type StreamMessage = FrameHeader | StreamError;

/** /ws/session: {event, data} both ways. */
export interface SessionMessage {
  event: string;
  data?: SessionData;
}

/** The data of the session's events; which fields come depends on the event. */
export interface SessionData {
  /** job events are numbered; a session's own messages are not */
  sequence?: number;
  session_id?: string;
  job_id?: string;
  /** analysis_progress */
  stage?: string;
  percent?: number;
  message?: string;
  /** long_video_detected */
  duration_minutes?: number;
  /** analysis_complete */
  result?: AnalysisResult;
  timings?: Timings;
  /** chat_response */
  delta?: string;
  done?: boolean;
  text?: string;
  cited_times?: number[];
  /** error */
  code?: string;
}

export interface AnalysisResult {
  model?: string;
  summary?: string;
  timeline?: TimelineEntry[];
  frames?: { time_s?: number }[];
  notes?: string[];
  timings?: Timings;
}

export interface TimelineEntry {
  start_s?: number;
  end_s?: number;
  description?: string;
  detections?: Detection[];
}

export interface Detection {
  class_name: string;
  confidence: number;
  is_weapon?: boolean;
  track_id?: number;
  class_id?: number;
  model?: string;
  /** pixels of the frame it was found on */
  box?: Box;
}

export interface Box {
  x_min: number;
  y_min: number;
  x_max: number;
  y_max: number;
}

/** One detected frame of a recording: its boxes are in pixels of a width x height frame. */
export interface FrameDetections {
  at: string | null;
  width: number;
  height: number;
  /** empty where the objects of the frame before are gone */
  detections: Detection[];
}

/** GET /api/sources/{id}/detections?start=&end= */
export interface RecordedDetections {
  frames: FrameDetections[];
}

export type Timings = Partial<
  Record<"probe_s" | "sampling_s" | "detection_s" | "inference_s" | "total_s", number>
>;

/** POST /api/videos */
export interface UploadAnswer {
  job?: { id: string };
  video?: { duration_s?: number; width?: number; height?: number };
  code?: string;
  message?: string;
}
