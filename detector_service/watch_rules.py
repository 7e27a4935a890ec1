"""Watch rules of live sources: the pre-filter on every detected frame, checks when due, and the
incidents a yes opens.

Per source (``RuleWatch``), on its processing thread, after the model and the tracker and before
the boxes are drawn: every enabled rule whose daily window is active (in the camera's time zone)
judges the frame with its pre-filter (``watch_rule_logic``: classes, zones, dwell, motion; no
model). A candidate is checked only when the rule has no check in flight, its interval has passed
since its last check and its hourly budget allows; otherwise it is held back (counted). A check
takes copies of a few recent candidate frames (one a second at most, the current one last) and
goes to the ``RuleChecker``, off the frame path.

A yes opens an incident of the rule's kind (its ``incident_kind``, else its id) through the
incident tracker, unless the rule's incident is open already (one situation, one incident) or
the rule is cooling down after its last one (``watch_rule_cooldown_s``). The incident closes at
a check that answers no, or once the rule has had no candidate for ``incident_close_after_s``
(the situation has left the picture, or the window closed); the source stopping closes it too.
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.backends.base import Image
from detector_service.rule_checker import CheckJob
from detector_service.settings import DetectorSettings
from detector_service.watch_rule_logic import (
    Budget,
    Polygon,
    Seen,
    budget_per_hour,
    inside,
    interval_passed,
    interval_s,
    prefilter,
    window_active,
)
from detector_service.watch_rule_spec import time_zone
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.model_types import RuleAnswer

log = logging.getLogger(__name__)

# Candidate frames kept for a check are at least this far apart (nanoseconds).
FRAME_SPACING_NS = 1_000_000_000
NO_ANALYZER = "no analyzer is configured (VIGIL_DETECTOR_ANALYZER_URL): candidates are not checked"


class RuleIncidents(Protocol):
    """The incident tracker's part: it stores and streams the incidents a rule opens."""

    def open_rule_incident(self, incident: pb.Incident, time_ns: int) -> None: ...

    def close_rule_incident(self, incident: pb.Incident, closed_ns: int) -> None: ...


@dataclass(slots=True)
class _Rule:
    rule: pb.WatchRule
    status: pb.WatchRuleStatus
    budget: Budget
    last_check_ns: int | None = None
    # A check is queued or running: candidates wait for its answer.
    pending: bool = False
    last_candidate_ns: int | None = None
    incident: pb.Incident | None = None
    cooldown_until_ns: int = 0


class RuleWatch:
    """One source's watch rules; ``observe`` on its processing thread, answers on the loop.

    ``submit`` hands a check over without waiting (``RuleChecker.submit``); None when no
    analyzer is configured: candidates are counted, and the rules say why none is checked.
    """

    def __init__(
        self,
        spec: pb.SourceSpec,
        settings: DetectorSettings,
        submit: Callable[[CheckJob], None] | None,
        incidents: RuleIncidents | None,
    ) -> None:
        self.source_id = spec.id
        self.submit = submit
        self.incidents = incidents
        self.frames_per_check = settings.watch_rule_frames
        self._cooldown_ns = int(settings.watch_rule_cooldown_s * 1e9)
        self._close_after_ns = int(settings.incident_close_after_s * 1e9)
        self._lost_ns = int(settings.track_lost_s * 1e9)
        self._lock = threading.Lock()
        self._rules: dict[str, _Rule] = {}
        self._areas: dict[str, Polygon] = {}
        self._tz = time_zone(spec.time_zone)
        # Track id -> (first seen, last seen), capture times in ns: the dwell of each object.
        self._tracks: dict[int, tuple[int, int]] = {}
        self._frames: collections.deque[tuple[Image, int]] = collections.deque(
            maxlen=self.frames_per_check
        )
        self._last_ns = 0
        self.configure(spec)

    def configure(self, spec: pb.SourceSpec) -> None:
        """Take the spec's rules now; a rule that stays (by id) keeps its counts and budget."""
        with self._lock:
            rules: dict[str, _Rule] = {}
            for rule in spec.watch_rules:
                kept = self._rules.pop(rule.id, None)
                if kept is None:
                    kept = _Rule(rule, pb.WatchRuleStatus(rule_id=rule.id), Budget(0))
                kept.rule = rule
                kept.budget.per_hour = budget_per_hour(rule)
                rules[rule.id] = kept
            for gone in self._rules.values():
                self._close(gone, self._last_ns)
            self._rules = rules
            self._areas = {
                z.name: [(p.x, p.y) for p in z.points]
                for z in spec.zones
                if z.kind == pb.ZONE_KIND_AREA
            }
            self._tz = time_zone(spec.time_zone)

    def status(self) -> list[pb.WatchRuleStatus]:
        with self._lock:
            return [_copy(r.status) for r in self._rules.values()]

    # --- processing thread ---------------------------------------------------------------------

    def observe(
        self,
        image: Image,
        detections: Sequence[common_pb2.Detection],
        motion: bool | None,
        time_ns: int,
    ) -> None:
        """Judge one detected frame (before its boxes are drawn); never raises, never waits."""
        try:
            with self._lock:
                jobs = self._observe(image, detections, motion, time_ns)
        except Exception:
            log.exception("watch rules of %s: a frame could not be judged", self.source_id)
            return
        if self.submit is not None:
            for job in jobs:
                self.submit(job)

    def _observe(
        self,
        image: Image,
        detections: Sequence[common_pb2.Detection],
        motion: bool | None,
        time_ns: int,
    ) -> list[CheckJob]:
        self._last_ns = time_ns
        enabled = [r for r in self._rules.values() if not r.rule.disabled]
        if not enabled:
            return []
        objects = self._objects(detections, image.shape[1], image.shape[0], time_ns)
        due: list[tuple[_Rule, list[int]]] = []
        candidate = False
        for r in enabled:
            hits = None
            if window_active(
                r.rule.active if r.rule.HasField("active") else None, time_ns, self._tz
            ):
                hits = prefilter(r.rule.filter, objects, motion, self._areas)
            if hits is None:
                if (
                    r.incident is not None
                    and time_ns - (r.last_candidate_ns or 0) >= self._close_after_ns
                ):
                    self._close(r, (r.last_candidate_ns or time_ns) + self._close_after_ns)
                continue
            candidate = True
            r.status.candidates += 1
            r.last_candidate_ns = time_ns
            if self.submit is None:
                r.status.last_error = NO_ANALYZER
                continue
            if (
                r.pending
                or not interval_passed(r.last_check_ns, time_ns, interval_s(r.rule))
                or not r.budget.allows(time_ns)
            ):
                r.status.held_back += 1
                continue
            r.pending, r.last_check_ns = True, time_ns
            r.budget.spend(time_ns)
            due.append((r, hits))
        if candidate:
            self._keep(image, time_ns, now=bool(due))
        return [self._job(r, hits, detections, objects, time_ns) for r, hits in due]

    def _objects(
        self, detections: Sequence[common_pb2.Detection], width: int, height: int, time_ns: int
    ) -> list[Seen]:
        for track_id, (_, last) in list(self._tracks.items()):
            if time_ns - last > self._lost_ns:
                del self._tracks[track_id]
        objects = []
        for d in detections:
            dwell = 0.0
            if d.HasField("track_id"):
                first, _ = self._tracks.get(d.track_id, (time_ns, time_ns))
                self._tracks[d.track_id] = (first, time_ns)
                dwell = (time_ns - first) / 1e9
            anchor = ((d.box.x_min + d.box.x_max) / 2 / width, d.box.y_max / height)
            objects.append(Seen(d.class_name, anchor, dwell))
        return objects

    def _keep(self, image: Image, time_ns: int, now: bool) -> None:
        """Keep a copy of a candidate frame for the checks (its boxes are drawn after this)."""
        while (
            self._frames and time_ns - self._frames[0][1] > FRAME_SPACING_NS * self.frames_per_check
        ):
            self._frames.popleft()  # from an earlier moment
        if now or not self._frames or time_ns - self._frames[-1][1] >= FRAME_SPACING_NS:
            if self._frames and time_ns - self._frames[-1][1] < FRAME_SPACING_NS:
                self._frames.pop()  # the current frame stands in for one just before it
            self._frames.append((image.copy(), time_ns))

    def _job(
        self,
        r: _Rule,
        hits: list[int],
        detections: Sequence[common_pb2.Detection],
        objects: Sequence[Seen],
        time_ns: int,
    ) -> CheckJob:
        zones = sorted(
            {
                name
                for i in hits
                for name, area in self._areas.items()
                if inside(objects[i].anchor, area)
            }
        )
        return CheckJob(
            outcome=self,
            source_id=self.source_id,
            rule_id=r.rule.id,
            condition=r.rule.condition,
            frames=tuple(self._frames),
            time_ns=time_ns,
            detections=tuple(detections[i] for i in hits),
            zones=tuple(zones),
        )

    def end(self) -> None:
        """The source stopped: its rules' incidents close, its moments are forgotten."""
        with self._lock:
            for r in self._rules.values():
                if r.incident is not None:
                    last = r.last_candidate_ns or self._last_ns
                    self._close(r, min(last + self._close_after_ns, max(self._last_ns, last)))
            self._tracks.clear()
            self._frames.clear()

    # --- event loop: the checks' outcomes ------------------------------------------------------

    def answered(self, job: CheckJob, answer: RuleAnswer, snapshot: bytes) -> None:
        with self._lock:
            r = self._rules.get(job.rule_id)
            if r is None:
                return  # removed meanwhile
            r.pending = False
            r.status.checks += 1
            r.status.model_seconds += answer.model_seconds
            r.status.last_reason, r.status.last_error = answer.reason, ""
            if answer.matched:
                r.status.matches += 1
                self._matched(r, job, answer, snapshot)
            elif r.incident is not None:
                self._close(r, job.time_ns)

    def failed(self, job: CheckJob, error: str) -> None:
        log.warning("watch rule %s of %s: %s", job.rule_id, job.source_id, error)
        with self._lock:
            r = self._rules.get(job.rule_id)
            if r is not None:
                r.pending = False
                r.budget.refund(job.time_ns)
                r.status.last_error = error

    def dropped(self, job: CheckJob) -> None:
        with self._lock:
            r = self._rules.get(job.rule_id)
            if r is not None:
                r.pending = False
                r.budget.refund(job.time_ns)
                r.status.held_back += 1

    def _matched(self, r: _Rule, job: CheckJob, answer: RuleAnswer, snapshot: bytes) -> None:
        if r.incident is not None or job.time_ns < r.cooldown_until_ns or self.incidents is None:
            return
        opened = Timestamp()
        opened.FromNanoseconds(job.time_ns)
        r.incident = pb.Incident(
            id=uuid.uuid4().hex,
            source_id=self.source_id,
            class_name=r.rule.incident_kind or r.rule.id,
            opened_at=opened,
            peak_confidence=max((d.confidence for d in job.detections), default=0.0),
            detections=job.detections,
            snapshot_jpeg=snapshot,
            zones=job.zones,
            rule_id=r.rule.id,
            rule_reason=answer.reason,
        )
        log.info(
            "watch rule %s of %s matched: %s", r.rule.id, self.source_id, answer.reason or "yes"
        )
        self.incidents.open_rule_incident(r.incident, job.time_ns)

    def _close(self, r: _Rule, closed_ns: int) -> None:
        if r.incident is None:
            return
        incident, r.incident = r.incident, None
        if self.incidents is not None:
            self.incidents.close_rule_incident(incident, closed_ns)
        r.cooldown_until_ns = closed_ns + self._cooldown_ns


def _copy(status: pb.WatchRuleStatus) -> pb.WatchRuleStatus:
    copy = pb.WatchRuleStatus()
    copy.CopyFrom(status)
    return copy


class WatchRules:
    """The rule watches of every source, by source id, sharing one checker."""

    def __init__(
        self,
        settings: DetectorSettings,
        submit: Callable[[CheckJob], None] | None,
        incidents: RuleIncidents | None,
    ) -> None:
        self.settings = settings
        self.submit = submit
        self.incidents = incidents
        self._watches: dict[str, RuleWatch] = {}
        self._lock = threading.Lock()

    def watch(self, spec: pb.SourceSpec) -> RuleWatch:
        """The source's watch, made on first use and reconfigured after."""
        with self._lock:
            watch = self._watches.get(spec.id)
            if watch is None:
                watch = self._watches[spec.id] = RuleWatch(
                    spec, self.settings, self.submit, self.incidents
                )
            else:
                watch.configure(spec)
            return watch

    def forget(self, source_id: str) -> None:
        with self._lock:
            watch = self._watches.pop(source_id, None)
        if watch is not None:
            watch.end()

    def end_all(self) -> None:
        """Close every rule's open incident (the service is stopping)."""
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.end()
