"""Plain values of the detector service's incidents and source events (zone and camera-health
events), and the items of an incident stream.

Separate from ``detector_types`` (frames and results) and ``source_types`` because incidents and
events are what the history and the alerts are about, a topic of their own; ``detector_types``
re-exports these. Each keeps the message it was made from as ``proto`` (left out of ``repr`` and
equality).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import (
    Detection,
    detections,
    enum_name,
    from_fields,
    optional_seconds,
    seconds,
)
from vigil.sdk.model_types import Verification
from vigil.sdk.recording_types import TimeRange
from vigil.sdk.review_types import Review
from vigil.sdk.zones import CROSSINGS, Direction

IncidentEventKind = Literal[
    "unspecified", "opened", "closed", "source_event", "unknown", "verified", "reviewed"
]
# Where the language model's check of an incident stands ("unspecified": verification is off).
VerificationState = Literal["unspecified", "pending", "done", "skipped", "unknown"]
SourceEventKind = Literal[
    "unspecified", "zone_enter", "zone_leave", "zone_loiter", "line_cross", "camera_frozen",
    "camera_covered", "camera_defocused", "camera_moved", "unknown",
]  # fmt: skip
DIRECTIONS: dict[pb.CrossingDirection.ValueType, Direction] = {v: k for k, v in CROSSINGS.items()}
SOURCE_EVENT_KINDS: dict[str, pb.SourceEventKind.ValueType] = {
    pb.SourceEventKind.Name(v).removeprefix("SOURCE_EVENT_KIND_").lower(): v
    for v in pb.SourceEventKind.values()
    if v
}


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
    # The part of the source's recording that shows it (``export`` it); None when the source is
    # not recorded. Open-ended while the incident is open.
    recording: TimeRange | None
    # An operator's review (None until reviewed).
    review: Review | None
    # The language model's check: where it stands, and its verdict once done (else None).
    verification_state: VerificationState
    verification: Verification | None
    # Dismissed by an operator, or rejected by the model and not confirmed; kept all the same.
    false_alarm: bool
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
            recording=TimeRange.from_proto(m.recording) if m.HasField("recording") else None,
            review=Review.of(m),
            verification_state=cast(
                VerificationState,
                enum_name(pb.VerificationState.Name, m.verification_state, "VERIFICATION_STATE_"),
            ),
            verification=(
                Verification.from_proto(m.verification) if m.HasField("verification") else None
            ),
            proto=m,
        )


@dataclass(frozen=True)
class SourceEvent:
    """A zone event (an object entered, left or loitered in an area, or crossed a line) or a
    camera-health event of a source."""

    id: str
    source_id: str
    kind: SourceEventKind
    at: float
    # Zone events: the zone, the object's class and track id; line crossings: the direction.
    zone: str
    class_name: str
    track_id: int
    direction: Direction | None
    detection: Detection | None
    # Camera-health events: the problem has ended.
    cleared: bool
    detail: str
    # Whether the service keeps a snapshot of the event (listed with include_snapshot).
    has_snapshot: bool
    snapshot_jpeg: bytes
    proto: pb.SourceEvent = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.SourceEvent) -> SourceEvent:
        kind = enum_name(pb.SourceEventKind.Name, m.kind, "SOURCE_EVENT_KIND_")
        return from_fields(
            cls,
            m,
            kind=cast(SourceEventKind, kind),
            at=seconds(m.at),
            direction=DIRECTIONS.get(m.direction),
            detection=Detection.from_proto(m.detection) if m.HasField("detection") else None,
            proto=m,
        )


@dataclass(frozen=True)
class IncidentEvent:
    kind: IncidentEventKind
    incident: Incident
    proto: pb.StreamIncidentsResponse = field(repr=False, compare=False)
    # This event alerts people under the source's alert policy (what the webhook and toasts get).
    alert: bool = False

    @classmethod
    def from_proto(cls, m: pb.StreamIncidentsResponse) -> IncidentEvent:
        kind = enum_name(pb.IncidentEventType.Name, m.type, "INCIDENT_EVENT_TYPE_")
        return cls(cast(IncidentEventKind, kind), Incident.from_proto(m.incident), m, m.alert)


def incident_item(m: pb.StreamIncidentsResponse) -> IncidentEvent | SourceEvent:
    """An incident stream's message: an incident's event, or a source event (include_events)."""
    if m.type == pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT:
        return SourceEvent.from_proto(m.event)
    return IncidentEvent.from_proto(m)
