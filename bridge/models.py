"""The HTTP API's JSON shapes, built from the SDK's values (``vigil.sdk``).

Where a shape is the SDK's value, its model is declared with ``@mirrors``: every field not named
as converted must be a field of the SDK type with the same type (checked when this module is
imported), and ``copied`` fills those fields from an SDK value, so the HTTP shape cannot drift
from the SDK's. Converted fields are those whose JSON differs: times as ISO 8601 strings, the
seed's stage names, detections as plain objects.

The same converters feed the session events (``bridge.events``), so a job's result looks the same
over HTTP, WebSocket and Socket.IO.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from vigil import sdk
from vigil.core import source_ids
from vigil.sdk.analyzer_types import JOB_STATES as SDK_JOB_STATES
from vigil.sdk.analyzer_types import Stage
from vigil.sdk.detector_types import CameraProblem

M = TypeVar("M", bound=BaseModel)


def mirrors(sdk_type: type, *, converted: Collection[str] = ()) -> Callable[[type[M]], type[M]]:
    """A model whose fields, but ``converted`` ones, are ``sdk_type``'s: same names, same types.
    Raises TypeError at import when they differ."""

    def check(model: type[M]) -> type[M]:
        hints = typing.get_type_hints(sdk_type)
        for name, info in model.model_fields.items():
            if name not in converted and hints.get(name) != info.annotation:
                raise TypeError(
                    f"{model.__name__}.{name} is not {sdk_type.__name__}.{name} "
                    f"({info.annotation} vs {hints.get(name)}); mark it converted or align it"
                )
        return model

    return check


def copied(model: type[M], value: object, **converted: Any) -> M:
    """A ``model`` from an SDK value: its mirrored fields copied, the ``converted`` ones given."""
    names = (name for name in model.model_fields if name not in converted)
    return model(**{name: getattr(value, name) for name in names}, **converted)


def iso(ts: Timestamp) -> str | None:
    """A time as the API writes it (the SDK's values keep the message, which has the exact
    nanoseconds that a float of seconds would round)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime().isoformat() + "Z"


JOB_STATES = list(SDK_JOB_STATES)
SOURCE_KINDS = Literal["webcam", "stream", "file", "test_pattern"]
SOURCE_MODES = Literal["on_demand", "always"]
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
STAGES: dict[Stage, str] = {
    "unspecified": "unspecified",
    "queued": "queued",
    "initializing": "initialization",
    "extracting_frames": "frame_extraction",
    "detecting": "detection",
    "inference": "ai_inference",
    "complete": "complete",
}


def stage(value: Stage) -> str:
    return STAGES.get(value, "unspecified")


@mirrors(sdk.Video, converted={"uploaded_at"})
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
    def from_sdk(cls, v: sdk.Video) -> Video:
        return copied(cls, v, uploaded_at=iso(v.proto.uploaded_at))


@mirrors(sdk.AnalysisOptions, converted={"sampling_policy"})
class Options(BaseModel):
    """Options of an analysis; every field may be left out."""

    model_config = ConfigDict(extra="forbid")
    sampling_policy: SAMPLING = "unspecified"
    max_frames: int = Field(default=0, ge=0, le=10_000)
    prompt: str = Field(default="", max_length=8000)
    skip_detection: bool = False

    def to_sdk(self) -> sdk.AnalysisOptions:
        return sdk.AnalysisOptions(**self.model_dump())

    @classmethod
    def from_sdk(cls, o: sdk.AnalysisOptions) -> Options:
        return copied(cls, o, sampling_policy=o.sampling_policy)


@mirrors(sdk.ErrorInfo)
class ErrorInfo(BaseModel):
    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_sdk(cls, e: sdk.ErrorInfo) -> ErrorInfo:
        return copied(cls, e)


def detection(d: sdk.Detection) -> dict[str, Any]:
    b = d.box
    out: dict[str, Any] = {
        "class_name": d.class_name, "class_id": d.class_id, "confidence": round(d.confidence, 4),
        "box": {"x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max},
        "is_weapon": d.is_weapon, "model": d.model,
    }  # fmt: skip
    if d.track_id is not None:
        out["track_id"] = d.track_id
    return out


def timings(t: sdk.StageTimings) -> dict[str, float]:
    return dataclasses.asdict(t)


@mirrors(sdk.AnalysisResult, converted={"timeline", "frames", "timings", "notes"})
class Result(BaseModel):
    summary: str
    timeline: list[dict[str, Any]]
    frames: list[dict[str, Any]]
    model: str
    timings: dict[str, float]
    notes: list[str]

    @classmethod
    def from_sdk(cls, r: sdk.AnalysisResult) -> Result:
        return copied(
            cls,
            r,
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
            timings=timings(r.timings),
            notes=list(r.notes),
        )  # fmt: skip


_JOB_CONVERTED = {
    "video", "state", "stage", "options", "result", "error", "created_at", "updated_at",
}  # fmt: skip


@mirrors(sdk.Job, converted=_JOB_CONVERTED)
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
    def from_sdk(cls, j: sdk.Job) -> Job:
        # A job always names its video; an empty record stands in should one ever not.
        video = j.video if j.video is not None else sdk.Video.from_proto(j.proto.video)
        return copied(
            cls, j, video=Video.from_sdk(video), state=j.state, stage=stage(j.stage),
            options=Options.from_sdk(j.options),
            result=Result.from_sdk(j.result) if j.result is not None else None,
            error=ErrorInfo.from_sdk(j.error) if j.error is not None else None,
            created_at=iso(j.proto.created_at), updated_at=iso(j.proto.updated_at),
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
    "max_fps": 15.0, "width": 0, "height": 0, "display_name": "Lobby", "mode": "always",
    "record_uri": "", "ptz": False,
}  # fmt: skip


ZONE_EXAMPLE: dict[str, Any] = {
    "name": "door", "kind": "area", "points": [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9], [0.1, 0.9]],
    "classes": ["person"], "loiter_s": 30.0, "direction": None,
}  # fmt: skip


@mirrors(sdk.Zone, converted={"kind", "points", "classes"})
class Zone(BaseModel):
    """A named area (enter, leave, loitering after ``loiter_s``; 0: none) or line from A to B
    (crossings; ``direction`` "in" is from the left of A→B to its right on the picture, "out" the
    other way, null both), in normalised coordinates ((0, 0) top left, (1, 1) bottom right).
    ``classes`` empty: every class. The detector checks the rest (names, point counts, ranges)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [ZONE_EXAMPLE]})
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["area", "line"]
    points: list[tuple[float, float]] = Field(max_length=64)
    classes: list[str] = Field(default_factory=list, max_length=100)
    loiter_s: float = Field(default=0.0, ge=0.0)
    direction: Literal["in", "out"] | None = None

    def to_sdk(self) -> sdk.Zone:
        return sdk.Zone(
            name=self.name, kind=self.kind, points=tuple(self.points),
            classes=tuple(self.classes), loiter_s=self.loiter_s, direction=self.direction,
        )  # fmt: skip

    @classmethod
    def from_sdk(cls, z: sdk.Zone) -> Zone:
        return cls.model_construct(
            name=z.name, kind=cast(Any, z.kind), points=list(z.points), classes=list(z.classes),
            loiter_s=z.loiter_s, direction=z.direction,
        )  # fmt: skip


@mirrors(sdk.Source, converted={"kind", "mode", "zones", "incident_zones"})
class SourceSpec(BaseModel):
    """A source as declared. ``mode`` left out takes the kind's default (always for webcams and
    streams, on_demand for files and the test pattern); sources returned carry the mode in
    effect. ``record_uri``: a stream's main stream, stored (masked in answers) for recording."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SOURCE_EXAMPLE]})
    id: str = Field(pattern=source_ids.ANCHORED)
    kind: SOURCE_KINDS
    uri: str = Field(default="", max_length=2048)
    loop: bool = False
    max_fps: float = Field(default=0.0, ge=0.0, le=240.0)
    width: int = Field(default=0, ge=0, le=7680)
    height: int = Field(default=0, ge=0, le=4320)
    display_name: str = Field(default="", max_length=200)
    mode: SOURCE_MODES | None = None
    record_uri: str = Field(default="", max_length=2048)
    zones: list[Zone] = Field(default_factory=list, max_length=32)
    incident_zones: list[str] = Field(default_factory=list, max_length=32)

    def to_sdk(self, base: sdk.Source) -> sdk.SourceSpec:
        """The spec for ``update_source`` on top of ``base`` (the source as it is): settings
        this model does not carry stay as they are."""
        return dataclasses.replace(
            base.spec,
            kind=self.kind, uri=self.uri, loop=self.loop, max_fps=self.max_fps,
            width=self.width, height=self.height, display_name=self.display_name,
            mode=self.mode or "", record_uri=self.record_uri,
            zones=tuple(z.to_sdk() for z in self.zones), incident_zones=tuple(self.incident_zones),
            ptz=self.ptz,
        )  # fmt: skip

    # The camera pans, tilts or zooms on purpose: a changed scene is not reported as moved.
    ptz: bool = False


@mirrors(sdk.TimeRange, converted={"start", "end"})
class TimeRange(BaseModel):
    """[start, end) in ISO 8601 UTC; ``end`` null: still going on."""

    start: str | None
    end: str | None

    @classmethod
    def from_proto(cls, r: Any) -> TimeRange:
        return cls(start=iso(r.start), end=iso(r.end) if r.HasField("end") else None)


@mirrors(sdk.Source, converted={"spec", "state", "counters", "state_since"})
class Source(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"spec": SOURCE_EXAMPLE, "state": "live", "last_error": "",
                          "counters": {"fps_in": 15.0, "fps_out": 15.0, "subscribers": 1},
                          "state_since": "2025-01-01T12:00:00.000000Z",
                          "camera_problems": ["camera_covered"]}]
        }
    )  # fmt: skip
    spec: SourceSpec
    state: str
    last_error: str
    counters: dict[str, float]
    state_since: str | None
    recording: bool = False
    # Camera-health problems present now ("camera_frozen", "camera_covered", "camera_defocused",
    # "camera_moved"); empty when healthy or not a camera.
    camera_problems: tuple[CameraProblem, ...] = ()

    @classmethod
    def from_sdk(cls, s: sdk.Source) -> Source:
        # Not validated: the detector's word on its own sources stands, even past our limits.
        converted = ("kind", "mode", "zones", "incident_zones")
        names = (name for name in SourceSpec.model_fields if name not in converted)
        spec = SourceSpec.model_construct(
            kind=cast(Any, s.kind), mode=cast(Any, s.mode),
            zones=[Zone.from_sdk(z) for z in s.zones], incident_zones=list(s.incident_zones),
            **{n: getattr(s, n) for n in names},
        )  # fmt: skip
        counters = {name: float(value) for name, value in dataclasses.asdict(s.counters).items()}
        return copied(
            cls, s, spec=spec, state=s.state, counters=counters,
            state_since=iso(s.proto.state_since),
        )  # fmt: skip


class SourceList(BaseModel):
    sources: list[Source]


@mirrors(sdk.Incident, converted={"opened_at", "closed_at", "detections", "recording"})
class Incident(BaseModel):
    id: str
    source_id: str
    class_name: str
    opened_at: str | None
    closed_at: str | None
    peak_confidence: float
    detections: list[dict[str, Any]]
    clip_path: str
    # The part of the source's recording that shows it (GET .../recording.mp4 with this range);
    # null when the source is not recorded.
    recording: TimeRange | None = None

    @classmethod
    def from_sdk(cls, i: sdk.Incident) -> Incident:
        recording = i.proto.recording if i.proto.HasField("recording") else None
        return copied(
            cls, i, opened_at=iso(i.proto.opened_at), closed_at=iso(i.proto.closed_at),
            detections=[detection(d) for d in i.detections],
            recording=TimeRange.from_proto(recording) if recording is not None else None,
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


@mirrors(sdk.SourceEvent, converted={"kind", "at", "detection", "snapshot_jpeg"})
class SourceEvent(BaseModel):
    """A zone event (zone_enter, zone_leave, zone_loiter, line_cross) or a camera-health event
    (camera_frozen, camera_covered, camera_defocused, camera_moved; ``cleared`` when it ended)."""

    id: str
    source_id: str
    kind: str
    at: str | None
    zone: str
    class_name: str
    track_id: int
    direction: Literal["in", "out"] | None
    cleared: bool
    detail: str
    has_snapshot: bool

    @classmethod
    def from_sdk(cls, e: sdk.SourceEvent) -> SourceEvent:
        return copied(cls, e, kind=e.kind, at=iso(e.proto.at))


class EventPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"events": [{"id": "ev-1", "source_id": "lobby-cam",
                          "kind": "zone_enter", "at": "2025-01-01T12:00:00Z", "zone": "door",
                          "class_name": "person", "track_id": 7, "direction": None,
                          "cleared": False, "detail": "", "has_snapshot": True}],
                          "next_page_token": ""}]
        }
    )  # fmt: skip
    events: list[SourceEvent]
    next_page_token: str
