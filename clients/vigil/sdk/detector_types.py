"""Plain values of the detector service: frames, detection results, sources and incidents.

Frames and detection results are defined here; sources live in ``source_types`` and incidents and
source events in ``incident_types``, re-exported here so that callers import from one place.

Each keeps the message it was made from as ``proto`` (left out of ``repr`` and equality).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import (
    Detection,
    ErrorInfo,
    detections,
    error_of,
    from_fields,
    seconds,
)
from vigil.sdk.incident_types import (
    DIRECTIONS,
    SOURCE_EVENT_KINDS,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    SourceEvent,
    SourceEventKind,
    VerificationState,
    incident_item,
)
from vigil.sdk.source_types import (
    ALERT_POLICIES,
    SOURCE_KINDS,
    SOURCE_MODES,
    CameraProblem,
    Source,
    SourceCounters,
    SourceKind,
    SourceMode,
    SourceSpec,
    SourceState,
)

__all__ = [
    "ALERT_POLICIES",
    "DIRECTIONS",
    "SOURCE_EVENT_KINDS",
    "SOURCE_KINDS",
    "SOURCE_MODES",
    "CameraProblem",
    "DetectFrame",
    "DetectResult",
    "Frame",
    "Incident",
    "IncidentEvent",
    "IncidentEventKind",
    "Source",
    "SourceCounters",
    "SourceEvent",
    "SourceEventKind",
    "SourceKind",
    "SourceMode",
    "SourceSpec",
    "SourceState",
    "SubscriptionItems",
    "VerificationState",
    "incident_item",
]


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
