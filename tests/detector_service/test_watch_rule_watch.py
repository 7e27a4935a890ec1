"""A source's watch rules fed frames at chosen capture times: interval, budget, daily window,
checks in flight, and the incidents a yes opens (through the real incident tracker and store).
The checks the watch hands over are collected and answered here, as the analyzer would."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from detector_service.incidents.tracker import IncidentConfig, IncidentTracker, open_tracker
from detector_service.rule_checker import CheckJob, pictures
from detector_service.settings import DetectorSettings
from detector_service.watch_rules import NO_ANALYZER, RuleWatch
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.model_types import RuleAnswer

S = 1_000_000_000
# 2026-06-01 00:00 UTC, a Monday.
MIDNIGHT = 1_780_272_000 * S
IMAGE = np.zeros((240, 320, 3), np.uint8)
FENCE = pb.Zone(
    name="fence",
    kind=pb.ZONE_KIND_AREA,
    points=[pb.Point(x=x, y=y) for x, y in ((0.5, 0), (1, 0), (1, 1), (0.5, 1))],
)


def person(x: float, track_id: int = 7) -> common_pb2.Detection:
    """A person whose feet stand at x (0..1) of a 320x240 frame."""
    box = common_pb2.BoundingBox(x_min=x * 320 - 10, y_min=100, x_max=x * 320 + 10, y_max=200)
    return common_pb2.Detection(class_name="person", confidence=0.8, box=box, track_id=track_id)


def spec(*rules: pb.WatchRule, time_zone: str = "UTC") -> pb.SourceSpec:
    return pb.SourceSpec(id="yard", zones=[FENCE], watch_rules=rules, time_zone=time_zone)


def climb(**kw: object) -> pb.WatchRule:
    return pb.WatchRule(
        id="climb",
        condition="someone climbs the fence",
        filter=pb.WatchRuleFilter(classes=["person"], zones=["fence"]),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        data_dir=tmp_path, watch_rule_cooldown_s=60.0, incident_close_after_s=5.0
    )


@pytest.fixture
async def tracker(tmp_path: pathlib.Path) -> AsyncIterator[IncidentTracker]:
    config = IncidentConfig(db_path=tmp_path / "incidents.sqlite3")
    tracker = open_tracker(config, asyncio.get_running_loop())
    yield tracker
    await asyncio.to_thread(tracker.close)


def statuses(watch: RuleWatch) -> dict[str, pb.WatchRuleStatus]:
    return {s.rule_id: s for s in watch.status()}


def no(job: CheckJob) -> RuleAnswer:
    return RuleAnswer(matched=False, reason="nobody climbs", model="m", model_seconds=0.5)


def yes(job: CheckJob) -> RuleAnswer:
    return RuleAnswer(matched=True, reason="a person is on the fence", model="m", model_seconds=0.5)


def test_the_interval_and_the_hourly_budget_bound_the_checks(settings: DetectorSettings) -> None:
    jobs: list[CheckJob] = []
    watch = RuleWatch(
        spec(climb(check_interval_s=10, budget_per_hour=3)), settings, jobs.append, None
    )
    for second in range(60):
        watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT + second * S)
        for job in jobs[len(jobs) - 1 :]:
            if job.time_ns == MIDNIGHT + second * S:
                watch.answered(job, no(job), b"")
    # Checked at 0, 10 and 20 s; then the hour's budget of 3 is spent.
    assert [(j.time_ns - MIDNIGHT) // S for j in jobs] == [0, 10, 20]
    status = statuses(watch)["climb"]
    assert (status.candidates, status.checks, status.held_back) == (60, 3, 57)
    assert status.model_seconds == pytest.approx(1.5)
    assert status.last_reason == "nobody climbs"
    # An hour after the first check, its call leaves the budget.
    watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT + 3600 * S)
    assert len(jobs) == 4


def test_frames_without_a_candidate_are_never_checked(settings: DetectorSettings) -> None:
    jobs: list[CheckJob] = []
    watch = RuleWatch(spec(climb(check_interval_s=1)), settings, jobs.append, None)
    for second in range(20):
        # Away from the fence, then nobody at all.
        watch.observe(IMAGE, [person(0.25)] if second < 10 else [], None, MIDNIGHT + second * S)
    assert jobs == []
    assert statuses(watch)["climb"].candidates == 0


def test_a_check_in_flight_holds_back_later_candidates(settings: DetectorSettings) -> None:
    jobs: list[CheckJob] = []
    watch = RuleWatch(spec(climb(check_interval_s=1)), settings, jobs.append, None)
    for second in range(5):
        watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT + second * S)
    assert len(jobs) == 1
    watch.failed(jobs[0], "the analyzer is down")
    assert statuses(watch)["climb"].last_error == "the analyzer is down"
    watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT + 5 * S)
    # Retried with the next candidate; the failed call did not spend the budget.
    assert len(jobs) == 2
    assert statuses(watch)["climb"].held_back == 4


def test_the_pictures_are_recent_candidate_frames_a_second_apart(
    settings: DetectorSettings,
) -> None:
    jobs: list[CheckJob] = []
    watch = RuleWatch(spec(climb(check_interval_s=5)), settings, jobs.append, None)
    for tenth in range(0, 56):  # 10 frames a second for 5.5 s
        watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT + tenth * S // 10)
        if tenth == 0:
            watch.answered(jobs[0], no(jobs[0]), b"")
    assert len(jobs) == 2
    times = [(t - MIDNIGHT) / S for _, t in jobs[1].frames]
    assert times == [3.0, 4.0, 5.0]
    shown = pictures(jobs[1].frames)
    assert [p.label for p in shown] == ["2.0 s before", "1.0 s before", "now"]
    assert all(p.jpeg.startswith(b"\xff\xd8") for p in shown)
    assert jobs[1].zones == ("fence",)
    assert [d.class_name for d in jobs[1].detections] == ["person"]


def test_the_daily_window_wraps_midnight_in_the_cameras_time_zone(
    settings: DetectorSettings,
) -> None:
    jobs: list[CheckJob] = []
    night = climb(check_interval_s=1, active=pb.DailyWindow(start="22:00", end="06:00"))
    # Tokyo is UTC+9: 22:00-06:00 there is 13:00-21:00 UTC.
    watch = RuleWatch(spec(night, time_zone="Asia/Tokyo"), settings, jobs.append, None)
    for hour in range(24):
        t = MIDNIGHT + hour * 3600 * S
        watch.observe(IMAGE, [person(0.75)], None, t)
        if jobs and jobs[-1].time_ns == t:
            watch.answered(jobs[-1], no(jobs[-1]), b"")
    assert [(j.time_ns - MIDNIGHT) // (3600 * S) for j in jobs] == list(range(13, 21))


def test_disabled_rules_and_no_analyzer(settings: DetectorSettings) -> None:
    rules = (climb(), pb.WatchRule(id="off", condition="anything", disabled=True))
    watch = RuleWatch(spec(*rules), settings, None, None)
    watch.observe(IMAGE, [person(0.75)], None, MIDNIGHT)
    status = statuses(watch)
    assert status["climb"].candidates == 1
    assert status["climb"].last_error == NO_ANALYZER
    assert status["off"].candidates == 0


async def test_a_yes_opens_one_incident_of_the_rules_kind(
    settings: DetectorSettings, tracker: IncidentTracker
) -> None:
    jobs: list[CheckJob] = []
    rule = climb(check_interval_s=2, incident_kind="intrusion")
    watch = RuleWatch(spec(rule), settings, jobs.append, tracker)
    events = tracker.subscribe("yard")

    def run(seconds: range, answer: object) -> None:
        for second in seconds:
            t = MIDNIGHT + second * S
            watch.observe(IMAGE, [person(0.75)] if answer else [], None, t)
            if jobs and jobs[-1].time_ns == t:
                watch.answered(jobs[-1], yes(jobs[-1]) if answer == "yes" else no(jobs[-1]), b"x")

    run(range(0, 10), "yes")  # five checks, all yes: one incident
    await asyncio.sleep(0.05)
    opened = events.get_nowait()
    assert opened is not None
    assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    incident = opened.incident
    assert (incident.class_name, incident.rule_id) == ("intrusion", "climb")
    assert incident.rule_reason == "a person is on the fence"
    assert list(incident.zones) == ["fence"]
    assert incident.snapshot_jpeg == b"x"
    assert incident.opened_at.ToNanoseconds() == MIDNIGHT
    assert events.get_nowait() is None
    assert statuses(watch)["climb"].matches == 5
    # The person leaves: the incident closes once no candidate was seen for close_after_s.
    run(range(10, 20), "")
    await asyncio.sleep(0.05)
    closed = events.get_nowait()
    assert closed is not None
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.id == incident.id
    assert closed.incident.closed_at.ToNanoseconds() == MIDNIGHT + 14 * S
    # Back within the rule's cooldown (60 s after the close): yes again, but no new incident.
    run(range(20, 30), "yes")
    await asyncio.sleep(0.05)
    assert events.get_nowait() is None
    # A no closes an incident too, once one is open again after the cooldown.
    run(range(80, 82), "yes")
    run(range(82, 84), "no")
    await asyncio.sleep(0.05)
    kinds = [e.type for e in iter(events.get_nowait, None)]
    assert kinds == [pb.INCIDENT_EVENT_TYPE_OPENED, pb.INCIDENT_EVENT_TYPE_CLOSED]
    stored = await tracker.list("yard", 10, "", include_snapshot=False)
    assert [i.rule_id for i in stored.incidents] == ["climb", "climb"]
