"""The pure parts of watch rules: pre-filter, interval, hourly budget, daily window (any clock)."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from detector_service.watch_rule_logic import (
    HOUR_NS,
    Budget,
    Seen,
    inside,
    interval_passed,
    interval_s,
    prefilter,
    window_active,
)
from vigil.detector.v1 import detector_service_pb2 as pb

S = 1_000_000_000
FENCE = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]  # the right half of the picture
AREAS = {"fence": FENCE}
PERSON_AT_FENCE = Seen("person", (0.75, 0.9), dwell_s=3.0)
PERSON_ELSEWHERE = Seen("person", (0.25, 0.9), dwell_s=3.0)
CAR_AT_FENCE = Seen("car", (0.75, 0.9), dwell_s=30.0)


def at(text: str, tz: str) -> int:
    """Unix ns of a local wall-clock time in ``tz``."""
    local = datetime.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return int(local.timestamp()) * S


def test_bottom_centre_inside_an_area() -> None:
    assert inside((0.75, 0.5), FENCE)
    assert not inside((0.25, 0.5), FENCE)
    triangle = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert inside((0.2, 0.2), triangle)
    assert not inside((0.8, 0.8), triangle)


def test_every_condition_of_the_filter_must_hold() -> None:
    rule = pb.WatchRuleFilter(classes=["person"], zones=["fence"], min_dwell_s=2.0)
    objects = [CAR_AT_FENCE, PERSON_ELSEWHERE, PERSON_AT_FENCE]
    assert prefilter(rule, objects, None, AREAS) == [2]
    # The class is wrong, the place is wrong, the dwell too short: no candidate.
    assert prefilter(rule, [CAR_AT_FENCE], None, AREAS) is None
    assert prefilter(rule, [PERSON_ELSEWHERE], None, AREAS) is None
    brief = Seen("person", (0.75, 0.9), dwell_s=1.0)
    assert prefilter(rule, [brief], None, AREAS) is None
    assert prefilter(rule, [], None, AREAS) is None


def test_empty_classes_mean_any_object_and_empty_zones_anywhere() -> None:
    in_zone = pb.WatchRuleFilter(zones=["fence"])
    assert prefilter(in_zone, [CAR_AT_FENCE, PERSON_ELSEWHERE], None, AREAS) == [0]
    anywhere = pb.WatchRuleFilter(classes=["person"])
    assert prefilter(anywhere, [PERSON_ELSEWHERE], None, AREAS) == [0]


def test_motion() -> None:
    moving = pb.WatchRuleFilter(motion=True)
    # No object condition: motion alone makes a candidate, with no objects in it.
    assert prefilter(moving, [], True, AREAS) == []
    assert prefilter(moving, [PERSON_AT_FENCE], False, AREAS) is None
    # A source detected on every frame is not judged for motion: the condition holds.
    assert prefilter(moving, [], None, AREAS) == []
    person_moving = pb.WatchRuleFilter(classes=["person"], motion=True)
    assert prefilter(person_moving, [PERSON_AT_FENCE], True, AREAS) == [0]
    assert prefilter(person_moving, [], True, AREAS) is None
    # No condition at all: every frame is a candidate.
    assert prefilter(pb.WatchRuleFilter(), [], False, AREAS) == []


def test_interval() -> None:
    assert interval_s(pb.WatchRule()) == 10.0
    assert interval_s(pb.WatchRule(check_interval_s=2.5)) == 2.5
    assert interval_passed(None, 0, 10.0)
    assert not interval_passed(100 * S, 109 * S, 10.0)
    assert interval_passed(100 * S, 110 * S, 10.0)


def test_budget_is_a_sliding_hour() -> None:
    budget = Budget(per_hour=3)
    for t in (0, 10, 20):
        assert budget.allows(t * S)
        budget.spend(t * S)
    assert not budget.allows(30 * S)
    # The first call leaves the hour exactly one hour after it was made.
    assert not budget.allows(HOUR_NS - 1)
    assert budget.allows(HOUR_NS)
    assert budget.used(HOUR_NS + 10 * S) == 1


def test_a_refunded_call_is_free_again() -> None:
    budget = Budget(per_hour=1)
    budget.spend(5 * S)
    assert not budget.allows(6 * S)
    budget.refund(5 * S)
    assert budget.allows(6 * S)
    budget.refund(5 * S)  # twice, or after it left the hour: nothing happens
    assert budget.used(6 * S) == 0


def test_daily_window() -> None:
    day = pb.DailyWindow(start="08:00", end="18:00")
    tz = zoneinfo.ZoneInfo("UTC")
    assert window_active(day, at("2026-06-01T08:00", "UTC"), tz)
    assert window_active(day, at("2026-06-01T17:59", "UTC"), tz)
    assert not window_active(day, at("2026-06-01T18:00", "UTC"), tz)
    assert not window_active(day, at("2026-06-01T07:59", "UTC"), tz)
    assert window_active(None, at("2026-06-01T03:00", "UTC"), tz)


@pytest.mark.parametrize(
    ("local", "active"),
    [
        ("2026-06-01T21:59", False),
        ("2026-06-01T22:00", True),
        ("2026-06-01T23:59", True),
        ("2026-06-02T00:00", True),
        ("2026-06-02T05:59", True),
        ("2026-06-02T06:00", False),
        ("2026-06-02T12:00", False),
    ],
)
def test_a_night_window_wraps_past_midnight(local: str, active: bool) -> None:
    night = pb.DailyWindow(start="22:00", end="06:00")
    tz = zoneinfo.ZoneInfo("Asia/Tokyo")
    assert window_active(night, at(local, "Asia/Tokyo"), tz) is active


def test_the_window_is_read_in_the_cameras_time_zone() -> None:
    night = pb.DailyWindow(start="22:00", end="06:00")
    moment = at("2026-01-15T23:00", "Europe/Berlin")  # 22:00 UTC, 17:00 in New York
    assert window_active(night, moment, zoneinfo.ZoneInfo("Europe/Berlin"))
    assert not window_active(night, moment, zoneinfo.ZoneInfo("America/New_York"))
    # Daylight saving time moves the same wall-clock window against UTC.
    summer = at("2026-07-15T22:30", "Europe/Berlin")  # 20:30 UTC
    assert window_active(night, summer, zoneinfo.ZoneInfo("Europe/Berlin"))
    assert not window_active(night, summer, zoneinfo.ZoneInfo("UTC"))
