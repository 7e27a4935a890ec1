"""The HTTP API's JSON shapes, built from the SDK's values (``vigil.sdk``).

Where a shape is the SDK's value, its model is declared with ``@mirrors``: every field not named
as converted must be a field of the SDK type with the same type (checked when this module is
imported), and ``copied`` fills those fields from an SDK value, so the HTTP shape cannot drift
from the SDK's. Converted fields are those whose JSON differs: times as ISO 8601 strings, the
seed's stage names, detections as plain objects. Sources, zones, motion, events and incidents are
in ``bridge.models_sources``.

The same converters feed the session events (``bridge.events``), so a job's result looks the same
over HTTP, WebSocket and Socket.IO.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from vigil import sdk
from vigil.sdk.analyzer_types import JOB_STATES as SDK_JOB_STATES
from vigil.sdk.analyzer_types import Stage

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
    "recording",
}  # fmt: skip


def _utc(at: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(at, datetime.UTC)


@mirrors(sdk.RecordingRange, converted={"start", "end"})
class RecordingRange(BaseModel):
    """[start, end) of a camera's recording, analysed instead of an upload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source_id": "gate",
                    "start": "2025-01-01T02:00:00Z",
                    "end": "2025-01-01T04:00:00Z",
                }
            ]
        },
    )
    source_id: str = Field(min_length=1, max_length=128)
    start: AwareDatetime
    end: AwareDatetime

    @classmethod
    def from_sdk(cls, r: sdk.RecordingRange) -> RecordingRange:
        return cls(source_id=r.source_id, start=_utc(r.start), end=_utc(r.end))

    def to_sdk(self) -> sdk.RecordingRange:
        return sdk.RecordingRange(self.source_id, self.start.timestamp(), self.end.timestamp())


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
    recording: RecordingRange | None = Field(
        default=None,
        description="The camera recording analysed, as far as it is recorded (the video's first "
        "instant is its start); null for an upload.",
    )

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
            recording=RecordingRange.from_sdk(j.recording) if j.recording is not None else None,
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
    video_id: str | None = Field(default=None, min_length=1, max_length=128)
    recording: RecordingRange | None = Field(
        default=None,
        description="A range of a camera's recording to analyse instead of an uploaded video "
        "(the analyzer fetches it from the detector service; the call answers once it has).",
    )
    options: Options = Field(default_factory=Options)
    session_id: str | None = Field(
        default=None,
        max_length=128,
        description="A session name that session clients may join instead of the job id.",
    )

    @model_validator(mode="after")
    def _one_video(self) -> StartAnalysis:
        if (self.video_id is None) == (self.recording is None):
            raise ValueError("give exactly one of video_id and recording")
        return self


class ChatQuestion(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "What happens at [00:01]?"}]},
    )
    question: str = Field(min_length=1, max_length=4000)
    max_tokens: int = Field(default=0, ge=0, le=8192)


@mirrors(sdk.TimeRange, converted={"start", "end"})
class TimeRange(BaseModel):
    """[start, end) in ISO 8601 UTC; ``end`` null: still going on."""

    start: str | None
    end: str | None

    @classmethod
    def from_proto(cls, r: Any) -> TimeRange:
        return cls(start=iso(r.start), end=iso(r.end) if r.HasField("end") else None)
