"""Plain values of the detector service: frames, detection results, sources and incidents.

Each keeps the message it was made from as ``proto`` (left out of ``repr`` and equality).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

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
from vigil.sdk.model_types import Verification
from vigil.sdk.motion import MotionSettings
from vigil.sdk.recording_types import TimeRange
from vigil.sdk.review_types import Review
from vigil.sdk.watch_rules import WatchRule, WatchRuleStatus
from vigil.sdk.zones import CROSSINGS, Direction, Zone

SourceKind = Literal["unspecified", "webcam", "stream", "file", "test_pattern", "unknown"]
SourceState = Literal[
    "unspecified", "idle", "starting", "live", "reconnecting", "stopped", "failed", "unknown"
]
# Sources from the service carry the mode in effect ("unspecified" only from an older service).
SourceMode = Literal["unspecified", "on_demand", "always", "unknown"]
IncidentEventKind = Literal[
    "unspecified", "opened", "closed", "source_event", "unknown", "verified", "reviewed"
]
# Where the language model's check of an incident stands ("unspecified": verification is off).
VerificationState = Literal["unspecified", "pending", "done", "skipped", "unknown"]
# When a source's weapon incidents alert people; empty: the service default.
ALERT_POLICIES: dict[str, pb.AlertPolicy.ValueType] = {
    "at_opening": pb.ALERT_POLICY_AT_OPENING,
    "when_confirmed": pb.ALERT_POLICY_WHEN_CONFIRMED,
    "both": pb.ALERT_POLICY_BOTH,
}
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
# A camera's health problems (``Source.camera_problems``), named as its source events' kinds.
CameraProblem = Literal[
    "camera_frozen", "camera_covered", "camera_defocused", "camera_moved", "unknown"
]

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
    # Being recorded now (always-on sources while their camera delivers).
    recording: bool
    proto: pb.Source = field(repr=False, compare=False)
    # Named areas and lines on the picture, and the areas a weapon incident is limited to.
    zones: tuple[Zone, ...] = ()
    incident_zones: tuple[str, ...] = ()

    @property
    def spec(self) -> SourceSpec:
        """The source as declared, to change and give to ``update_source``."""
        return SourceSpec.from_proto(self.proto.spec)

    # The camera pans, tilts or zooms on purpose: a changed scene is not reported as moved.
    ptz: bool = False
    # The camera-health problems present now, for example ("camera_covered",); empty: healthy.
    camera_problems: tuple[CameraProblem, ...] = ()
    # How motion gates the object detector (always-on sources).
    motion: MotionSettings = field(default_factory=MotionSettings)
    # The replica running it (host:port) where detector replicas share sources; else empty.
    replica: str = ""
    # Situations the language model watches for, what each has done, and the camera's IANA time
    # zone their times are read in (empty: the service's).
    watch_rules: tuple[WatchRule, ...] = ()
    watch_rule_status: tuple[WatchRuleStatus, ...] = ()
    time_zone: str = ""

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
            recording=m.recording,
            replica=m.replica,
            proto=m,
            zones=tuple(Zone.from_proto(z) for z in spec.zones),
            incident_zones=tuple(spec.incident_zones),
            motion=MotionSettings.from_proto(spec.motion),
            watch_rules=tuple(WatchRule.from_proto(r) for r in spec.watch_rules),
            watch_rule_status=tuple(WatchRuleStatus.from_proto(s) for s in m.watch_rules),
            camera_problems=tuple(
                cast(CameraProblem, enum_name(pb.SourceEventKind.Name, k, "SOURCE_EVENT_KIND_"))
                for k in m.camera_problems
            ),
        )


@dataclass(frozen=True)
class SourceSpec:
    """A source as declared, for ``update_source``: read one with ``Source.spec``, change it
    with ``dataclasses.replace`` and send it back. URIs come masked; sent back unchanged they keep
    the real ones. Settings this SDK has no field for travel on in ``proto`` untouched."""

    id: str
    kind: str
    uri: str = ""
    loop: bool = False
    max_fps: float = 0.0
    width: int = 0
    height: int = 0
    display_name: str = ""
    # "always", "on_demand", or empty for the kind's default.
    mode: str = ""
    record_uri: str = ""
    zones: tuple[Zone, ...] = ()
    incident_zones: tuple[str, ...] = ()
    # The camera pans, tilts or zooms on purpose: a changed scene is not reported as moved.
    ptz: bool = False
    # How motion gates the object detector (always-on sources).
    motion: MotionSettings = field(default_factory=MotionSettings)
    # "at_opening", "when_confirmed", "both", or empty for the service default.
    alert_policy: str = ""
    # Situations the language model watches for (ids unique), and the camera's IANA time zone
    # their times are read in (empty: the service's).
    watch_rules: tuple[WatchRule, ...] = ()
    time_zone: str = ""
    proto: pb.SourceSpec = field(default_factory=pb.SourceSpec, repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.SourceSpec) -> SourceSpec:
        mode = enum_name(pb.SourceMode.Name, m.mode, "SOURCE_MODE_")
        return from_fields(
            cls,
            m,
            kind=enum_name(pb.SourceKind.Name, m.kind, "SOURCE_KIND_"),
            mode="" if mode == "unspecified" else mode,
            zones=tuple(Zone.from_proto(z) for z in m.zones),
            incident_zones=tuple(m.incident_zones),
            motion=MotionSettings.from_proto(m.motion),
            alert_policy=_alert_policy_name(m.alert_policy),
            watch_rules=tuple(WatchRule.from_proto(r) for r in m.watch_rules),
            proto=m,
        )

    def to_proto(self) -> pb.SourceSpec:
        """The message: ``proto`` with this value's fields set (``ValueError`` for an unknown
        kind or mode)."""
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}; one of {', '.join(SOURCE_KINDS)}")
        if self.mode and self.mode not in SOURCE_MODES:
            raise ValueError(f"unknown source mode {self.mode!r}; one of {', '.join(SOURCE_MODES)}")
        m = pb.SourceSpec()
        m.CopyFrom(self.proto)
        m.id, m.kind, m.uri, m.loop = self.id, SOURCE_KINDS[self.kind], self.uri, self.loop
        m.max_fps, m.width, m.height = self.max_fps, self.width, self.height
        m.display_name, m.record_uri, m.ptz = self.display_name, self.record_uri, self.ptz
        m.time_zone = self.time_zone
        _replace(m.watch_rules, (r.to_proto() for r in self.watch_rules))
        m.mode = SOURCE_MODES[self.mode] if self.mode else pb.SOURCE_MODE_UNSPECIFIED
        _replace(m.zones, (z.to_proto() for z in self.zones))
        _replace(m.incident_zones, self.incident_zones)
        m.motion.CopyFrom(self.motion.to_proto())
        if self.alert_policy and self.alert_policy not in ALERT_POLICIES:
            raise ValueError(
                f"unknown alert policy {self.alert_policy!r}; one of {', '.join(ALERT_POLICIES)}"
            )
        m.alert_policy = ALERT_POLICIES.get(self.alert_policy, pb.ALERT_POLICY_UNSPECIFIED)
        return m


def _alert_policy_name(value: pb.AlertPolicy.ValueType) -> str:
    name = enum_name(pb.AlertPolicy.Name, value, "ALERT_POLICY_")
    return "" if name == "unspecified" else name


def _replace(repeated: Any, items: Iterable[Any]) -> None:
    del repeated[:]
    repeated.extend(items)


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
