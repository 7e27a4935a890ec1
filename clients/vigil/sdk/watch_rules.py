"""Watch rules of a source: situations in plain language the language model watches for, and
what each has done since the detector started."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.detector.v1 import detector_service_pb2 as pb


@dataclass(frozen=True)
class WatchRule:
    """A situation the model watches for on one camera. The pre-filter (``classes`` present, in
    one of ``zones``, tracked ``min_dwell_s``, ``motion``) picks candidate moments; only those
    reach the model, at most once per ``check_interval_s`` and ``budget_per_hour`` times an hour
    (0: the service defaults). ``active_start``/``active_end`` ("HH:MM", the camera's time zone;
    both empty: always) wrap past midnight when end is before start. ``incident_kind`` empty: the
    rule's id."""

    id: str
    condition: str
    classes: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    min_dwell_s: float = 0.0
    motion: bool = False
    check_interval_s: float = 0.0
    budget_per_hour: int = 0
    incident_kind: str = ""
    active_start: str = ""
    active_end: str = ""
    disabled: bool = False

    @classmethod
    def from_proto(cls, m: pb.WatchRule) -> WatchRule:
        f = m.filter
        return cls(
            id=m.id,
            condition=m.condition,
            classes=tuple(f.classes),
            zones=tuple(f.zones),
            min_dwell_s=f.min_dwell_s,
            motion=f.motion,
            check_interval_s=m.check_interval_s,
            budget_per_hour=m.budget_per_hour,
            incident_kind=m.incident_kind,
            active_start=m.active.start,
            active_end=m.active.end,
            disabled=m.disabled,
        )

    def to_proto(self) -> pb.WatchRule:
        m = pb.WatchRule(
            id=self.id,
            condition=self.condition,
            filter=pb.WatchRuleFilter(
                classes=self.classes,
                zones=self.zones,
                min_dwell_s=self.min_dwell_s,
                motion=self.motion,
            ),
            check_interval_s=self.check_interval_s,
            budget_per_hour=self.budget_per_hour,
            incident_kind=self.incident_kind,
            disabled=self.disabled,
        )
        # Unset means always, so the window is only set when it names a time.
        if self.active_start or self.active_end:
            m.active.start, m.active.end = self.active_start, self.active_end
        return m


@dataclass(frozen=True)
class WatchRuleStatus:
    """What a rule has done since the service started: frames that passed its pre-filter
    (``candidates``), model calls (``checks``), yes answers (``matches``), candidates the
    interval or budget held back, the model's seconds, and the last answer's reason or the last
    check's error."""

    rule_id: str
    candidates: int = 0
    checks: int = 0
    matches: int = 0
    held_back: int = 0
    model_seconds: float = 0.0
    last_reason: str = ""
    last_error: str = ""

    @classmethod
    def from_proto(cls, m: pb.WatchRuleStatus) -> WatchRuleStatus:
        return cls(
            rule_id=m.rule_id,
            candidates=m.candidates,
            checks=m.checks,
            matches=m.matches,
            held_back=m.held_back,
            model_seconds=m.model_seconds,
            last_reason=m.last_reason,
            last_error=m.last_error,
        )
