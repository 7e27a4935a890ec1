"""Plain values of the detector service's sources: a source as it runs, and the spec that adds
or changes one.

Separate from ``detector_types`` (frames and results) and ``incident_types`` because a source's
configuration is a topic of its own, with the most fields; ``detector_types`` re-exports these.
Each keeps the message it was made from as ``proto`` (left out of ``repr`` and equality).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import (
    enum_name,
    from_fields,
    optional_seconds,
)
from vigil.sdk.motion import MotionSettings
from vigil.sdk.watch_rules import WatchRule, WatchRuleStatus
from vigil.sdk.zones import Zone

SourceKind = Literal["unspecified", "webcam", "stream", "file", "test_pattern", "unknown"]
SourceState = Literal[
    "unspecified", "idle", "starting", "live", "reconnecting", "stopped", "failed", "unknown"
]
# Sources from the service carry the mode in effect ("unspecified" only from an older service).
SourceMode = Literal["unspecified", "on_demand", "always", "unknown"]
# When a source's weapon incidents alert people; empty: the service default.
ALERT_POLICIES: dict[str, pb.AlertPolicy.ValueType] = {
    "at_opening": pb.ALERT_POLICY_AT_OPENING,
    "when_confirmed": pb.ALERT_POLICY_WHEN_CONFIRMED,
    "both": pb.ALERT_POLICY_BOTH,
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
