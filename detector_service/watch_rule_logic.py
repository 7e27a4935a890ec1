"""The pure parts of watch rules: the pre-filter, the check interval, the hourly budget and the
daily window. No model, no threads, no clock of their own: every function is handed the time.

A rule's pre-filter judges the objects of one frame. An object stands where its box's bottom
centre is (as in ``zones.py``: the feet, not the middle of the body), and its dwell is how long
its track has been followed. A frame is a candidate when every condition the filter sets holds:
one object of ``classes`` (any class when empty) inside one of ``zones`` (anywhere when empty)
tracked for ``min_dwell_s``, and motion when ``motion`` is set. A filter with no object condition
needs no object (motion alone, or nothing at all: then every frame is a candidate and only the
interval and the budget bound the model's work).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vigil.detector.v1 import detector_service_pb2 as pb

# The contract's defaults for a rule's unset (0) interval and budget.
DEFAULT_INTERVAL_S = 10.0
DEFAULT_BUDGET_PER_HOUR = 60
HOUR_NS = 3600 * 1_000_000_000
HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")

# A polygon in normalised picture coordinates (0..1), corners in order.
Polygon = Sequence[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One object of a frame as a pre-filter judges it."""

    class_name: str
    # Bottom centre of its box, normalised to the picture (0..1).
    anchor: tuple[float, float]
    # Seconds its track has been followed (0 for a box no track has claimed yet).
    dwell_s: float


def minute_of_day(text: str) -> int | None:
    """Minutes since midnight of an "HH:MM" time, or None when it is not one."""
    match = HHMM.fullmatch(text)
    return int(match[1]) * 60 + int(match[2]) if match else None


def window_active(window: pb.DailyWindow | None, when_ns: int, tz: datetime.tzinfo | None) -> bool:
    """Whether ``when_ns`` (Unix time) falls inside the daily window, read in time zone ``tz``
    (None: the service's local time); a window whose end comes before its start wraps past
    midnight. No window: always active."""
    if window is None:
        return True
    start, end = minute_of_day(window.start), minute_of_day(window.end)
    if start is None or end is None:
        return False  # refused by validation; never true rather than always
    local = datetime.datetime.fromtimestamp(when_ns / 1e9, tz)
    minute = local.hour * 60 + local.minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def inside(point: tuple[float, float], polygon: Polygon) -> bool:
    """Whether ``point`` lies inside ``polygon`` (even-odd rule, by ray casting)."""
    x, y = point
    result = False
    for (x1, y1), (x2, y2) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def needs_object(rule_filter: pb.WatchRuleFilter) -> bool:
    return bool(rule_filter.classes or rule_filter.zones or rule_filter.min_dwell_s > 0)


def object_passes(
    rule_filter: pb.WatchRuleFilter, seen: Seen, areas: Mapping[str, Polygon]
) -> bool:
    if rule_filter.classes and seen.class_name not in rule_filter.classes:
        return False
    if rule_filter.zones and not any(
        name in areas and inside(seen.anchor, areas[name]) for name in rule_filter.zones
    ):
        return False
    return seen.dwell_s >= rule_filter.min_dwell_s


def prefilter(
    rule_filter: pb.WatchRuleFilter,
    objects: Sequence[Seen],
    motion: bool | None,
    areas: Mapping[str, Polygon],
) -> list[int] | None:
    """The indices of the objects that make the frame a candidate (empty for a filter without
    object conditions), or None when it is not one. ``motion`` None means the source's frames are
    not judged for motion (it is detected on every frame): the motion condition then holds."""
    if rule_filter.motion and motion is False:
        return None
    if not needs_object(rule_filter):
        return []
    passing = [i for i, seen in enumerate(objects) if object_passes(rule_filter, seen, areas)]
    return passing or None


def interval_s(rule: pb.WatchRule) -> float:
    return rule.check_interval_s or DEFAULT_INTERVAL_S


def budget_per_hour(rule: pb.WatchRule) -> int:
    return rule.budget_per_hour or DEFAULT_BUDGET_PER_HOUR


def interval_passed(last_check_ns: int | None, now_ns: int, interval: float) -> bool:
    return last_check_ns is None or now_ns - last_check_ns >= interval * 1e9


class Budget:
    """Model calls per hour over a sliding hour: a call spent at t counts until t + 1 h."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._spent: collections.deque[int] = collections.deque()

    def _forget(self, now_ns: int) -> None:
        while self._spent and now_ns - self._spent[0] >= HOUR_NS:
            self._spent.popleft()

    def allows(self, now_ns: int) -> bool:
        self._forget(now_ns)
        return len(self._spent) < self.per_hour

    def spend(self, now_ns: int) -> None:
        self._spent.append(now_ns)

    def refund(self, spent_ns: int) -> None:
        """Give back a call that did not reach the model (dropped, or the analyzer failed)."""
        with contextlib.suppress(ValueError):  # already out of the hour
            self._spent.remove(spent_ns)

    def used(self, now_ns: int) -> int:
        self._forget(now_ns)
        return len(self._spent)
