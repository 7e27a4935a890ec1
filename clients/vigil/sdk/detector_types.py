"""Plain values of the detector service: frames, detection results, sources and incidents.

Each keeps the message it was made from as ``proto`` (left out of ``repr`` and equality).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, cast

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import (
    Detection,
    ErrorInfo,
    detections,
    enum_name,
    error_of,
    from_fields,
    optional_seconds,
    seconds,
)

SourceKind = Literal["unspecified", "webcam", "stream", "file", "test_pattern", "unknown"]
SourceState = Literal[
    "unspecified", "idle", "starting", "live", "reconnecting", "stopped", "failed", "unknown"
]
# Sources from the service carry the mode in effect ("unspecified" only from an older service).
SourceMode = Literal["unspecified", "on_demand", "always", "unknown"]
IncidentEventKind = Literal["unspecified", "opened", "closed", "unknown"]

SOURCE_KINDS: dict[str, pb.SourceKind.ValueType] = {
    "webcam": pb.SOURCE_KIND_WEBCAM,
    "stream": pb.SOURCE_KIND_STREAM,
    "file": pb.SOURCE_KIND_FILE,
    "test_pattern": pb.SOURCE_KIND_TEST_PATTERN,
}
# What ``add_source`` takes; leaving the mode out takes the kind's default (always for webcams and
# streams, on demand for files and the test pattern).
SOURCE_MODES: dict[str, pb.SourceMode.ValueType] = {
    "on_demand": pb.SOURCE_MODE_ON_DEMAND,
    "always": pb.SOURCE_MODE_ALWAYS,
}


@dataclass(frozen=True)
class DetectFrame:
    """One frame to send to ``detect``.

    ``sequence`` None numbers frames in the order sent, from 0; ``timestamp`` (capture time,
    seconds since the epoch) None means the moment it is sent; ``annotate`` None follows the
    ``detect`` call's default.
    """

    jpeg: bytes
    sequence: int | None = None
    timestamp: float | None = None
    source_id: str = ""
    annotate: bool | None = None


@dataclass(frozen=True)
class DetectResult:
    """The answer to one DetectFrame, in the order the frames were sent."""

    source_id: str
    sequence: int
    timestamp: float
    detections: tuple[Detection, ...]
    annotated_jpeg: bytes
    inference_ms: float
    width: int
    height: int
    error: ErrorInfo | None
    proto: pb.DetectResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.DetectResponse) -> DetectResult:
        return from_fields(
            cls,
            m,
            timestamp=seconds(m.capture_time),
            detections=detections(m.detections),
            error=error_of(m, "error"),
            proto=m,
        )


@dataclass(frozen=True)
class Frame:
    """One processed frame of a source the service owns (``subscribe``)."""

    source_id: str
    sequence: int
    timestamp: float
    jpeg: bytes
    width: int
    height: int
    detections: tuple[Detection, ...]
    # Frames this subscriber has lost so far by reading too slowly.
    dropped: int
    inference_ms: float
    error: ErrorInfo | None
    proto: pb.Frame = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.Frame) -> Frame:
        return from_fields(
            cls,
            m,
            timestamp=seconds(m.capture_time),
            detections=detections(m.detections),
            error=error_of(m, "detection_error"),
            proto=m,
        )


@dataclass(frozen=True)
class SourceCounters:
    fps_in: float = 0.0
    fps_out: float = 0.0
    inference_ms: float = 0.0
    frames_replaced: int = 0
    frames_dropped: int = 0
    subscribers: int = 0
    frames_published: int = 0
    detection_errors: int = 0
    reconnects: int = 0
    # Motion first: frames where something moved, given to the object detector, and not.
    frames_with_motion: int = 0
    frames_detected: int = 0
    frames_skipped: int = 0


@dataclass(frozen=True)
class Source:
    """A source as the service sees it; ``subscribe`` also yields one on every state change."""

    id: str
    kind: SourceKind
    uri: str
    loop: bool
    max_fps: float
    width: int
    height: int
    display_name: str
    mode: SourceMode
    # A stream's main stream, for recording (masked like ``uri``); empty when ``uri`` serves both.
    record_uri: str
    state: SourceState
    last_error: str
    state_since: float | None
    counters: SourceCounters
    proto: pb.Source = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.Source) -> Source:
        # The spec's fields (id, uri, loop, ...) are copied; the rest come from the source.
        spec = m.spec
        return from_fields(
            cls,
            spec,
            kind=cast(SourceKind, enum_name(pb.SourceKind.Name, spec.kind, "SOURCE_KIND_")),
            mode=cast(SourceMode, enum_name(pb.SourceMode.Name, spec.mode, "SOURCE_MODE_")),
            state=cast(SourceState, enum_name(pb.SourceState.Name, m.state, "SOURCE_STATE_")),
            last_error=m.last_error,
            state_since=optional_seconds(m, "state_since"),
            counters=from_fields(SourceCounters, m.counters),
            proto=m,
        )


@dataclass(frozen=True)
class Incident:
    """A period during which a weapon-class object was seen on a source."""

    id: str
    source_id: str
    class_name: str
    opened_at: float
    # None while the incident is open.
    closed_at: float | None
    peak_confidence: float
    detections: tuple[Detection, ...]
    snapshot_jpeg: bytes
    clip_path: str
    proto: pb.Incident = field(repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @classmethod
    def from_proto(cls, m: pb.Incident) -> Incident:
        return from_fields(
            cls,
            m,
            opened_at=seconds(m.opened_at),
            closed_at=optional_seconds(m, "closed_at"),
            detections=detections(m.detections),
            proto=m,
        )


@dataclass(frozen=True)
class IncidentEvent:
    kind: IncidentEventKind
    incident: Incident
    proto: pb.StreamIncidentsResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.StreamIncidentsResponse) -> IncidentEvent:
        kind = enum_name(pb.IncidentEventType.Name, m.type, "INCIDENT_EVENT_TYPE_")
        return cls(cast(IncidentEventKind, kind), Incident.from_proto(m.incident), m)


class SubscriptionItems:
    """Turns subscription messages into Frames and Sources.

    Frames whose ``source_id`` the service left empty get the id of the source the subscription
    follows (the service sends that Source first on every subscription).
    """

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id

    def __call__(self, m: pb.SubscribeResponse) -> Frame | Source | None:
        which = m.WhichOneof("event")
        if which == "source":
            source = Source.from_proto(m.source)
            self.source_id = source.id
            return source
        if which == "frame":
            frame = Frame.from_proto(m.frame)
            if not frame.source_id and self.source_id:
                frame = dataclasses.replace(frame, source_id=self.source_id)
            return frame
        return None
