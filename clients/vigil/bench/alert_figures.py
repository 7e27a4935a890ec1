"""The pure parts of ``vigil bench alert``: when the weapon appeared on each source, which
appearance each incident belongs to, and percentiles of the latencies."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between the nearest ranks (as numpy's
    default): p50 of [1, 2, 3, 4] is 2.5, p99 of 100 values lies between the two largest."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def onsets(frames: Iterable[tuple[float, bool]]) -> list[float]:
    """Capture times of the frames where the weapon appears: showing it, after a frame that does
    not. A run already showing when the first frame came is left out (its start was not seen)."""
    found: list[float] = []
    before: bool | None = None
    for captured, shows in frames:
        if shows and before is False:
            found.append(captured)
        before = shows
    return found


@dataclass(frozen=True)
class Opened:
    """An OPENED event as the webhook got it: the incident, its source, the capture time of the
    frame that opened it (``opened_at``) and when the event arrived."""

    incident_id: str
    source_id: str
    opened_at: float
    arrived: float


def match(
    opened: Iterable[Opened], onsets_of: dict[str, list[float]], longest_s: float
) -> dict[str, float]:
    """Incident id -> the onset it belongs to: the last appearance on its source at or before the
    opening frame, and no more than ``longest_s`` before it (else the appearance was not seen:
    the incident is left out). An onset belongs to one incident at most: the first to open."""
    # The opening frame is the onset frame itself at the earliest; a millisecond covers rounding
    # of the timestamps through protobuf.
    slack = 1e-3
    taken: set[tuple[str, float]] = set()
    matched: dict[str, float] = {}
    for event in sorted(opened, key=lambda e: e.opened_at):
        before = [t for t in onsets_of.get(event.source_id, []) if t <= event.opened_at + slack]
        if not before:
            continue
        onset = before[-1]
        if event.opened_at - onset > longest_s or (event.source_id, onset) in taken:
            continue
        taken.add((event.source_id, onset))
        matched[event.incident_id] = onset
    return matched
