"""The HTTP API's JSON shapes of the detector's sources: specs with their zones, motion
settings and watch rules, live sources, incidents and source events (``@mirrors``: see
``bridge.models``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from bridge.models import TimeRange, copied, detection, iso, mirrors
from bridge.models_reviews import Review
from vigil import sdk
from vigil.core import source_ids
from vigil.sdk.detector_types import CameraProblem

SOURCE_KINDS = Literal["webcam", "stream", "file", "test_pattern"]
SOURCE_MODES = Literal["on_demand", "always"]

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


MOTION_EXAMPLE: dict[str, Any] = {
    "detect_every_frame": False, "sensitivity": 0.6,
    "masks": [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.1], [0.8, 0.1]]],
}  # fmt: skip


@mirrors(sdk.MotionSettings, converted={"masks"})
class Motion(BaseModel):
    """How motion gates a source's object detector. ``sensitivity`` from 0 to 1 (higher sees
    smaller changes as motion; 0: the detector's default); ``masks``: areas whose changes are
    ignored (a clock overlay, a tree), each a polygon of normalised points. The detector checks
    the rest (point counts, ranges)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [MOTION_EXAMPLE]})
    detect_every_frame: bool = False
    sensitivity: float = Field(default=0.0, ge=0.0, le=1.0)
    masks: list[list[tuple[float, float]]] = Field(default_factory=list, max_length=64)

    def to_sdk(self) -> sdk.MotionSettings:
        return sdk.MotionSettings(
            detect_every_frame=self.detect_every_frame, sensitivity=self.sensitivity,
            masks=tuple(tuple(mask) for mask in self.masks),
        )  # fmt: skip

    @classmethod
    def from_sdk(cls, m: sdk.MotionSettings) -> Motion:
        return cls.model_construct(
            detect_every_frame=m.detect_every_frame, sensitivity=m.sensitivity,
            masks=[list(mask) for mask in m.masks],
        )  # fmt: skip


RULE_EXAMPLE: dict[str, Any] = {
    "id": "fence", "condition": "someone climbs the fence", "classes": ["person"],
    "zones": ["yard"], "min_dwell_s": 2.0, "motion": True, "check_interval_s": 10.0,
    "budget_per_hour": 60, "incident_kind": "intrusion", "active_start": "22:00",
    "active_end": "06:00", "disabled": False,
}  # fmt: skip


@mirrors(sdk.WatchRule, converted={"classes", "zones"})
class WatchRule(BaseModel):
    """A situation the language model watches for on the camera. Its pre-filter (one of
    ``classes`` detected, in one of the area ``zones``, tracked ``min_dwell_s``, ``motion``)
    picks candidate moments; only those reach the model, at most once per ``check_interval_s``
    and ``budget_per_hour`` times an hour (0: the detector's defaults, 10 s and 60). A yes opens
    an incident of ``incident_kind`` (empty: the id). ``active_start``/``active_end`` ("HH:MM",
    the camera's time zone; both empty: always) wrap past midnight. The detector checks the rest
    (ids, known classes and zones, ranges)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RULE_EXAMPLE]})
    id: str = Field(min_length=1, max_length=64)
    condition: str = Field(min_length=1, max_length=1000)
    classes: list[str] = Field(default_factory=list, max_length=100)
    zones: list[str] = Field(default_factory=list, max_length=32)
    min_dwell_s: float = Field(default=0.0, ge=0.0)
    motion: bool = False
    check_interval_s: float = Field(default=0.0, ge=0.0)
    budget_per_hour: int = Field(default=0, ge=0)
    incident_kind: str = Field(default="", max_length=64)
    active_start: str = Field(default="", max_length=5)
    active_end: str = Field(default="", max_length=5)
    disabled: bool = False

    def to_sdk(self) -> sdk.WatchRule:
        fields = self.model_dump(exclude={"classes", "zones"})
        return sdk.WatchRule(**fields, classes=tuple(self.classes), zones=tuple(self.zones))

    @classmethod
    def from_sdk(cls, r: sdk.WatchRule) -> WatchRule:
        fields = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)}
        return cls.model_construct(**{**fields, "classes": list(r.classes),
                                      "zones": list(r.zones)})  # fmt: skip


@mirrors(sdk.WatchRuleStatus)
class WatchRuleStatus(BaseModel):
    """What a rule has done since the detector started: frames that passed its pre-filter,
    model calls, yes answers, candidates the interval or budget held back, the model's seconds,
    the last answer's reason and the last check's error (empty when it worked)."""

    rule_id: str
    candidates: int
    checks: int
    matches: int
    held_back: int
    model_seconds: float
    last_reason: str
    last_error: str


@mirrors(
    sdk.Source,
    converted={"kind", "mode", "zones", "incident_zones", "motion", "watch_rules", "time_zone"},
)
class SourceSpec(BaseModel):
    """A source as declared. ``mode`` left out takes the kind's default (always for webcams and
    streams, on_demand for files and the test pattern); sources returned carry the mode in
    effect. ``record_uri``: a stream's main stream, stored (masked in answers) for recording.
    ``motion`` left out: the detector's defaults, no masks. ``watch_rules`` and ``time_zone``
    (IANA, for example "Europe/Berlin", in which rule times are read; empty: the detector's) left
    out or null keep the source's, so a client that knows nothing of rules cannot drop them."""

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
    motion: Motion = Field(default_factory=Motion)
    watch_rules: list[WatchRule] | None = Field(default=None, max_length=100)
    time_zone: str | None = Field(default=None, max_length=64)

    def to_sdk(self, base: sdk.SourceSpec | None = None) -> sdk.SourceSpec:
        """The spec for ``update_source`` on top of ``base`` (the source's spec as it is:
        settings this model does not carry stay as they are), or for a new source."""
        base = base or sdk.SourceSpec(id=self.id, kind=self.kind)
        return dataclasses.replace(
            base,
            kind=self.kind, uri=self.uri, loop=self.loop, max_fps=self.max_fps,
            width=self.width, height=self.height, display_name=self.display_name,
            mode=self.mode or "", record_uri=self.record_uri,
            zones=tuple(z.to_sdk() for z in self.zones), incident_zones=tuple(self.incident_zones),
            ptz=self.ptz, motion=self.motion.to_sdk(),
            watch_rules=(
                base.watch_rules if self.watch_rules is None
                else tuple(r.to_sdk() for r in self.watch_rules)
            ),
            time_zone=base.time_zone if self.time_zone is None else self.time_zone,
        )  # fmt: skip

    # The camera pans, tilts or zooms on purpose: a changed scene is not reported as moved.
    ptz: bool = False


@mirrors(sdk.Source, converted={"spec", "state", "counters", "state_since", "watch_rule_status"})
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
    # What each of ``spec.watch_rules`` has done since the detector started.
    watch_rule_status: list[WatchRuleStatus] = Field(default_factory=list)

    @classmethod
    def from_sdk(cls, s: sdk.Source) -> Source:
        # Not validated: the detector's word on its own sources stands, even past our limits.
        converted = ("kind", "mode", "zones", "incident_zones", "motion", "watch_rules")
        names = (name for name in SourceSpec.model_fields if name not in converted)
        spec = SourceSpec.model_construct(
            kind=cast(Any, s.kind), mode=cast(Any, s.mode),
            zones=[Zone.from_sdk(z) for z in s.zones], incident_zones=list(s.incident_zones),
            motion=Motion.from_sdk(s.motion),
            watch_rules=[WatchRule.from_sdk(r) for r in s.watch_rules],
            **{n: getattr(s, n) for n in names},
        )  # fmt: skip
        counters = {name: float(value) for name, value in dataclasses.asdict(s.counters).items()}
        return copied(
            cls, s, spec=spec, state=s.state, counters=counters,
            state_since=iso(s.proto.state_since),
            watch_rule_status=[copied(WatchRuleStatus, r) for r in s.watch_rule_status],
        )  # fmt: skip


class SourceList(BaseModel):
    sources: list[Source]


@mirrors(
    sdk.Incident,
    converted={
        "opened_at", "closed_at", "detections", "recording", "review", "verification_state",
        "verification",
    },
)  # fmt: skip
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
    # The operator's review (null until reviewed); a false alarm: dismissed, or rejected by the
    # model and not confirmed.
    review: Review | None = None
    # The language model's check: pending, done, skipped (unspecified: verification is off); its
    # verdict once done ({verdict: confirmed|rejected|uncertain, sees, threat_level, reason,
    # model, model_seconds}); a false alarm (rejected by the model) is kept.
    verification_state: str = "unspecified"
    verification: dict[str, Any] | None = None
    false_alarm: bool = False

    @classmethod
    def from_sdk(cls, i: sdk.Incident) -> Incident:
        recording = i.proto.recording if i.proto.HasField("recording") else None
        verification = dataclasses.asdict(i.verification) if i.verification else None
        return copied(
            cls, i, opened_at=iso(i.proto.opened_at), closed_at=iso(i.proto.closed_at),
            detections=[detection(d) for d in i.detections],
            recording=TimeRange.from_proto(recording) if recording is not None else None,
            review=Review.from_sdk(i.review) if i.review is not None else None,
            verification_state=i.verification_state, verification=verification,
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
