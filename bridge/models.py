"""The HTTP API's JSON shapes, built from the gRPC messages (enums as short lowercase names).

The same converters feed the session events (``bridge.events``), so a job's result looks the same
over HTTP, WebSocket and Socket.IO.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.common.v1 import common_pb2 as cpb
from vigil.core import source_ids
from vigil.detector.v1 import detector_service_pb2 as dpb


def enum_name(prefix: str, name: str) -> str:
    """``JOB_STATE_RUNNING`` -> ``running``."""
    return name.removeprefix(prefix).lower()


def iso(ts: Timestamp) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime().isoformat() + "Z"


JOB_STATES = [enum_name("JOB_STATE_", n) for n in apb.JobState.DESCRIPTOR.values_by_name][1:]
SOURCE_KINDS = Literal["webcam", "stream", "file", "test_pattern"]
SAMPLING = Literal["unspecified", "seed", "adaptive", "uniform"]

VIDEO_EXAMPLE: dict[str, Any] = {
    "id": "3f2b9c1e8a7d4f6b9e0c1d2a3b4c5d6e",
    "name": "lobby.mp4",
    "size": 1843200,
    "sha256": "9b74c9897bac770ffc029102a200c5de7c1d2a3b4c5d6e7f8091a2b3c4d5e6f7",
    "duration_s": 2.0,
    "fps": 15.0,
    "width": 320,
    "height": 240,
    "frame_count": 30,
    "codec": "mpeg4",
    "uploaded_at": "2025-01-01T12:00:00.000000Z",
}
JOB_EXAMPLE: dict[str, Any] = {
    "id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "video": VIDEO_EXAMPLE,
    "state": "running",
    "stage": "frame_extraction",
    "percent": 25.0,
    "queue_position": 0,
    "options": {"sampling_policy": "seed", "max_frames": 0, "prompt": "", "skip_detection": False},
    "result": None,
    "error": None,
    "created_at": "2025-01-01T12:00:01.000000Z",
    "updated_at": "2025-01-01T12:00:02.000000Z",
    "attempts": 1,
}
# Stage names as the seed's page expects them (its colours: blue initialization, green
# frame_extraction and complete, yellow ai_inference).
STAGES: dict[int, str] = {
    apb.STAGE_UNSPECIFIED: "unspecified",
    apb.STAGE_QUEUED: "queued",
    apb.STAGE_INITIALIZING: "initialization",
    apb.STAGE_EXTRACTING_FRAMES: "frame_extraction",
    apb.STAGE_DETECTING: "detection",
    apb.STAGE_INFERENCE: "ai_inference",
    apb.STAGE_COMPLETE: "complete",
}


class Video(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [VIDEO_EXAMPLE]})
    id: str
    name: str
    size: int
    sha256: str
    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int
    codec: str
    uploaded_at: str | None

    @classmethod
    def from_pb(cls, v: apb.Video) -> Video:
        return cls(
            id=v.id, name=v.name, size=v.size, sha256=v.sha256, duration_s=v.duration_s,
            fps=v.fps, width=v.width, height=v.height, frame_count=v.frame_count,
            codec=v.codec, uploaded_at=iso(v.uploaded_at),
        )  # fmt: skip


class Options(BaseModel):
    """Options of an analysis; every field may be left out."""

    model_config = ConfigDict(extra="forbid")
    sampling_policy: SAMPLING = "unspecified"
    max_frames: int = Field(default=0, ge=0, le=10_000)
    prompt: str = Field(default="", max_length=8000)
    skip_detection: bool = False

    def to_pb(self) -> apb.AnalysisOptions:
        return apb.AnalysisOptions(
            sampling_policy=apb.SamplingPolicy.Value(
                f"SAMPLING_POLICY_{self.sampling_policy}".upper()
            ),
            max_frames=self.max_frames,
            prompt=self.prompt,
            skip_detection=self.skip_detection,
        )

    @classmethod
    def from_pb(cls, o: apb.AnalysisOptions) -> Options:
        policy = enum_name("SAMPLING_POLICY_", apb.SamplingPolicy.Name(o.sampling_policy))
        return cls.model_validate(
            {"sampling_policy": policy, "max_frames": o.max_frames, "prompt": o.prompt,
             "skip_detection": o.skip_detection}
        )  # fmt: skip


class ErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_pb(cls, e: cpb.Error) -> ErrorInfo:
        return cls(code=e.code, message=e.message, retryable=e.retryable)


def detection(d: cpb.Detection) -> dict[str, Any]:
    b = d.box
    out: dict[str, Any] = {
        "class_name": d.class_name, "class_id": d.class_id, "confidence": round(d.confidence, 4),
        "box": {"x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max},
        "is_weapon": d.is_weapon, "model": d.model,
    }  # fmt: skip
    if d.HasField("track_id"):
        out["track_id"] = d.track_id
    return out


def timings(t: apb.StageTimings) -> dict[str, float]:
    return {
        "probe_s": t.probe_s, "sampling_s": t.sampling_s, "detection_s": t.detection_s,
        "inference_s": t.inference_s, "total_s": t.total_s,
    }  # fmt: skip


class Result(BaseModel):
    summary: str
    timeline: list[dict[str, Any]]
    frames: list[dict[str, Any]]
    model: str
    timings: dict[str, float]
    notes: list[str]

    @classmethod
    def from_pb(cls, r: apb.AnalysisResult) -> Result:
        return cls(
            summary=r.summary,
            timeline=[
                {"start_s": e.start_s, "end_s": e.end_s, "description": e.description,
                 "detections": [detection(d) for d in e.detections],
                 "frame_times_s": list(e.frame_times_s)}
                for e in r.timeline
            ],
            frames=[
                {"time_s": f.time_s, "index": f.index, "reason": f.reason,
                 "scene_change": f.scene_change,
                 "detections": [detection(d) for d in f.detections]}
                for f in r.frames
            ],
            model=r.model,
            timings=timings(r.timings),
            notes=list(r.notes),
        )  # fmt: skip


class Job(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})
    id: str
    video: Video
    state: str = Field(description=f"One of {', '.join(JOB_STATES)}.")
    stage: str = Field(description=f"One of {', '.join(STAGES.values())}.")
    percent: float
    queue_position: int
    options: Options
    result: Result | None
    error: ErrorInfo | None
    created_at: str | None
    updated_at: str | None
    attempts: int

    @classmethod
    def from_pb(cls, j: apb.Job) -> Job:
        return cls(
            id=j.id, video=Video.from_pb(j.video),
            state=enum_name("JOB_STATE_", apb.JobState.Name(j.state)),
            stage=STAGES.get(j.stage, "unspecified"), percent=j.percent,
            queue_position=j.queue_position, options=Options.from_pb(j.options),
            result=Result.from_pb(j.result) if j.HasField("result") else None,
            error=ErrorInfo.from_pb(j.error) if j.HasField("error") else None,
            created_at=iso(j.created_at), updated_at=iso(j.updated_at), attempts=j.attempts,
        )  # fmt: skip


class JobPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"jobs": [JOB_EXAMPLE], "next_page_token": "50"}]}
    )
    jobs: list[Job]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty at end.")


class UploadResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"video": VIDEO_EXAMPLE, "job": None}]}
    )
    video: Video
    job: Job | None = Field(description="The job started for it, when ?analyze=true.")


class StartAnalysis(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"video_id": VIDEO_EXAMPLE["id"], "options": {"sampling_policy": "seed"}}]
        },
    )
    video_id: str = Field(min_length=1, max_length=128)
    options: Options = Field(default_factory=Options)
    session_id: str | None = Field(
        default=None,
        max_length=128,
        description="A session name that session clients may join instead of the job id.",
    )


class ChatQuestion(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "What happens at [00:01]?"}]},
    )
    question: str = Field(min_length=1, max_length=4000)
    max_tokens: int = Field(default=0, ge=0, le=8192)


SOURCE_EXAMPLE: dict[str, Any] = {
    "id": "lobby-cam", "kind": "stream", "uri": "rtsp://192.0.2.10/stream1", "loop": False,
    "max_fps": 15.0, "width": 0, "height": 0, "display_name": "Lobby",
}  # fmt: skip


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SOURCE_EXAMPLE]})
    id: str = Field(pattern=source_ids.ANCHORED)
    kind: SOURCE_KINDS
    uri: str = Field(default="", max_length=2048)
    loop: bool = False
    max_fps: float = Field(default=0.0, ge=0.0, le=240.0)
    width: int = Field(default=0, ge=0, le=7680)
    height: int = Field(default=0, ge=0, le=4320)
    display_name: str = Field(default="", max_length=200)

    def to_pb(self) -> dpb.SourceSpec:
        return dpb.SourceSpec(
            id=self.id, kind=dpb.SourceKind.Value(f"SOURCE_KIND_{self.kind.upper()}"),
            uri=self.uri, loop=self.loop, max_fps=self.max_fps, width=self.width,
            height=self.height, display_name=self.display_name,
        )  # fmt: skip


class Source(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"spec": SOURCE_EXAMPLE, "state": "live", "last_error": "",
                          "counters": {"fps_in": 15.0, "fps_out": 15.0, "subscribers": 1},
                          "state_since": "2025-01-01T12:00:00.000000Z"}]
        }
    )  # fmt: skip
    spec: SourceSpec
    state: str
    last_error: str
    counters: dict[str, float]
    state_since: str | None

    @classmethod
    def from_pb(cls, s: dpb.Source) -> Source:
        sp = s.spec
        kind = enum_name("SOURCE_KIND_", dpb.SourceKind.Name(sp.kind))
        spec = SourceSpec.model_construct(
            id=sp.id, kind=cast(Any, kind), uri=sp.uri, loop=sp.loop, max_fps=sp.max_fps,
            width=sp.width, height=sp.height, display_name=sp.display_name,
        )  # fmt: skip
        c = s.counters
        counters = {f.name: float(getattr(c, f.name)) for f in c.DESCRIPTOR.fields}
        return cls(
            spec=spec, state=enum_name("SOURCE_STATE_", dpb.SourceState.Name(s.state)),
            last_error=s.last_error, counters=counters, state_since=iso(s.state_since),
        )  # fmt: skip


class SourceList(BaseModel):
    sources: list[Source]


class Incident(BaseModel):
    id: str
    source_id: str
    class_name: str
    opened_at: str | None
    closed_at: str | None
    peak_confidence: float
    detections: list[dict[str, Any]]
    clip_path: str

    @classmethod
    def from_pb(cls, i: dpb.Incident) -> Incident:
        return cls(
            id=i.id, source_id=i.source_id, class_name=i.class_name,
            opened_at=iso(i.opened_at), closed_at=iso(i.closed_at),
            peak_confidence=i.peak_confidence, detections=[detection(d) for d in i.detections],
            clip_path=i.clip_path,
        )  # fmt: skip


class IncidentPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"incidents": [{"id": "inc-1", "source_id": "lobby-cam",
                          "class_name": "knife", "opened_at": "2025-01-01T12:00:00Z",
                          "closed_at": None, "peak_confidence": 0.81, "detections": [],
                          "clip_path": ""}], "next_page_token": ""}]
        }
    )  # fmt: skip
    incidents: list[Incident]
    next_page_token: str
