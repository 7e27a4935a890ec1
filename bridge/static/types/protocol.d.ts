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

export interface Source {
  spec: { id: string; display_name?: string };
  state: string;
}

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
