"""Plain values of the analyzer service: videos, jobs, analysis events and chat chunks.

Each keeps the message it was made from as ``proto`` (left out of ``repr`` and equality).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal, cast

from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.sdk.common import (
    Detection,
    ErrorInfo,
    detections,
    enum_name,
    error_of,
    from_fields,
    optional_seconds,
    seconds,
    timestamp,
)

JobState = Literal[
    "unspecified", "queued", "running", "succeeded", "failed", "cancelled", "unknown"
]
Stage = Literal[
    "unspecified",
    "queued",
    "initializing",
    "extracting_frames",
    "detecting",
    "inference",
    "complete",
    "unknown",
]
SamplingPolicy = Literal["unspecified", "seed", "adaptive", "uniform", "unknown"]
EventKind = Literal["progress", "long_video", "thinking", "complete", "error"]

FINISHED_STATES: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})
JOB_STATES: dict[str, pb.JobState.ValueType] = {
    "queued": pb.JOB_STATE_QUEUED,
    "running": pb.JOB_STATE_RUNNING,
    "succeeded": pb.JOB_STATE_SUCCEEDED,
    "failed": pb.JOB_STATE_FAILED,
    "cancelled": pb.JOB_STATE_CANCELLED,
}
_POLICIES: dict[str, pb.SamplingPolicy.ValueType] = {
    "unspecified": pb.SAMPLING_POLICY_UNSPECIFIED,
    "seed": pb.SAMPLING_POLICY_SEED,
    "adaptive": pb.SAMPLING_POLICY_ADAPTIVE,
    "uniform": pb.SAMPLING_POLICY_UNIFORM,
}


def _stage(value: int) -> Stage:
    return cast(Stage, enum_name(pb.Stage.Name, value, "STAGE_"))


@dataclass(frozen=True)
class AnalysisOptions:
    """How one analysis runs; every default leaves the choice to the service."""

    sampling_policy: SamplingPolicy = "unspecified"
    # 0: as many as the model's context holds.
    max_frames: int = 0
    # Empty: the service's own prompt.
    prompt: str = ""
    skip_detection: bool = False

    def to_proto(self) -> pb.AnalysisOptions:
        return pb.AnalysisOptions(
            sampling_policy=_POLICIES.get(self.sampling_policy, pb.SAMPLING_POLICY_UNSPECIFIED),
            max_frames=self.max_frames,
            prompt=self.prompt,
            skip_detection=self.skip_detection,
        )

    @classmethod
    def from_proto(cls, m: pb.AnalysisOptions) -> AnalysisOptions:
        policy = enum_name(pb.SamplingPolicy.Name, m.sampling_policy, "SAMPLING_POLICY_")
        return cls(cast(SamplingPolicy, policy), m.max_frames, m.prompt, m.skip_detection)


@dataclass(frozen=True)
class Video:
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
    uploaded_at: float | None
    proto: pb.Video = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.Video) -> Video:
        return from_fields(cls, m, uploaded_at=optional_seconds(m, "uploaded_at"), proto=m)


@dataclass(frozen=True)
class StageTimings:
    probe_s: float = 0.0
    sampling_s: float = 0.0
    detection_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0

    @classmethod
    def from_proto(cls, m: pb.StageTimings) -> StageTimings:
        return from_fields(cls, m)


@dataclass(frozen=True)
class SampledFrame:
    time_s: float
    index: int
    detections: tuple[Detection, ...]
    scene_change: bool
    reason: str


@dataclass(frozen=True)
class TimelineEvent:
    start_s: float
    end_s: float
    description: str
    detections: tuple[Detection, ...]
    frame_times_s: tuple[float, ...]


@dataclass(frozen=True)
class AnalysisResult:
    summary: str
    timeline: tuple[TimelineEvent, ...]
    frames: tuple[SampledFrame, ...]
    model: str
    timings: StageTimings
    notes: tuple[str, ...]
    proto: pb.AnalysisResult = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.AnalysisResult) -> AnalysisResult:
        return cls(
            summary=m.summary,
            timeline=tuple(
                TimelineEvent(
                    e.start_s,
                    e.end_s,
                    e.description,
                    detections(e.detections),
                    tuple(e.frame_times_s),
                )
                for e in m.timeline
            ),
            frames=tuple(
                SampledFrame(f.time_s, f.index, detections(f.detections), f.scene_change, f.reason)
                for f in m.frames
            ),
            model=m.model,
            timings=StageTimings.from_proto(m.timings),
            notes=tuple(m.notes),
            proto=m,
        )


@dataclass(frozen=True)
class RecordingRange:
    """[start, end) of a camera's recording (seconds since the epoch), to analyse instead of an
    upload: the analyzer fetches it from the detector service."""

    source_id: str
    start: float
    end: float

    @classmethod
    def from_proto(cls, m: pb.RecordingRange) -> RecordingRange:
        return cls(m.source_id, seconds(m.start), seconds(m.end))

    def to_proto(self) -> pb.RecordingRange:
        return pb.RecordingRange(
            source_id=self.source_id, start=timestamp(self.start), end=timestamp(self.end)
        )


@dataclass(frozen=True)
class Job:
    id: str
    video: Video | None
    state: JobState
    stage: Stage
    percent: float
    # 1 is next; 0 when not queued.
    queue_position: int
    options: AnalysisOptions
    # Set when the job succeeded (ListJobs leaves results out; get_job has them).
    result: AnalysisResult | None
    # Set when the job failed or was cancelled.
    error: ErrorInfo | None
    created_at: float | None
    updated_at: float | None
    attempts: int
    proto: pb.Job = field(repr=False, compare=False)
    # The camera recording the video was cut from (what it covers: the video's first instant is
    # ``recording.start``); None for an upload.
    recording: RecordingRange | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @classmethod
    def from_proto(cls, m: pb.Job) -> Job:
        return cls(
            id=m.id,
            video=Video.from_proto(m.video) if m.HasField("video") else None,
            state=cast(JobState, enum_name(pb.JobState.Name, m.state, "JOB_STATE_")),
            stage=_stage(m.stage),
            percent=m.percent,
            queue_position=m.queue_position,
            options=AnalysisOptions.from_proto(m.options),
            result=AnalysisResult.from_proto(m.result) if m.HasField("result") else None,
            error=error_of(m, "error"),
            created_at=optional_seconds(m, "created_at"),
            updated_at=optional_seconds(m, "updated_at"),
            attempts=m.attempts,
            proto=m,
            recording=(RecordingRange.from_proto(m.recording) if m.HasField("recording") else None),
        )


@dataclass(frozen=True)
class AnalysisEvent:
    """One event of a job. Which fields matter depends on ``kind``:

    - ``progress``: stage, percent, message, queue_position
    - ``long_video``: message, duration_s
    - ``thinking``: message, frame_count
    - ``complete`` (the last event of a successful job): result, timings
    - ``error`` (the last event of a failed or cancelled job): error, and message
    """

    job_id: str
    sequence: int
    time: float | None
    kind: EventKind
    stage: Stage = "unspecified"
    percent: float = 0.0
    message: str = ""
    queue_position: int = 0
    duration_s: float = 0.0
    frame_count: int = 0
    result: AnalysisResult | None = None
    timings: StageTimings | None = None
    error: ErrorInfo | None = None
    proto: pb.StreamAnalysisEventsResponse = field(
        default_factory=pb.StreamAnalysisEventsResponse, repr=False, compare=False
    )

    @property
    def final(self) -> bool:
        return self.kind in ("complete", "error")

    @classmethod
    def from_proto(cls, m: pb.StreamAnalysisEventsResponse) -> AnalysisEvent | None:
        make = functools.partial(cls, m.job_id, m.sequence, optional_seconds(m, "time"), proto=m)
        which = m.WhichOneof("event")
        if which == "progress":
            p = m.progress
            return make(
                kind="progress",
                stage=_stage(p.stage),
                percent=p.percent,
                message=p.message,
                queue_position=p.queue_position,
            )
        if which == "long_video_detected":
            v = m.long_video_detected
            return make(kind="long_video", message=v.message, duration_s=v.duration_s)
        if which == "thinking":
            t = m.thinking
            return make(kind="thinking", message=t.message, frame_count=t.frame_count)
        if which == "complete":
            c = m.complete
            return make(
                kind="complete",
                stage="complete",
                percent=100.0,
                result=AnalysisResult.from_proto(c.result),
                timings=StageTimings.from_proto(c.timings),
            )
        if which == "error":
            error = ErrorInfo.from_proto(m.error)
            return make(kind="error", message=error.message, error=error)
        return None


@dataclass(frozen=True)
class ChatChunk:
    """A piece of an answer; the last one has ``done`` set and carries the whole text."""

    delta: str
    done: bool
    text: str
    cited_times_s: tuple[float, ...]
    completion_tokens: int
    proto: pb.ChatResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.ChatResponse) -> ChatChunk:
        return cls(m.delta, m.done, m.text, tuple(m.cited_times_s), m.completion_tokens, m)


@dataclass(frozen=True)
class UploadResult:
    video: Video
    # Set when the upload asked for an analysis to start.
    job: Job | None
    proto: pb.UploadVideoResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.UploadVideoResponse) -> UploadResult:
        job = Job.from_proto(m.job) if m.HasField("job") else None
        return cls(Video.from_proto(m.video), job, m)
