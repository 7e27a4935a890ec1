"""Retention: each source's days, then a disk cap over all sources; holds outrank both."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from detector_service.recording.contract import RecordingIndex, Segment

DAY_S = 86_400.0
# Segments deleted per index query while over the cap: ten minutes of ten-second segments.
BATCH = 64


@dataclass(frozen=True)
class RetentionPolicy:
    default_days: float
    # Per source: days kept, where it differs from the default.
    days: Mapping[str, float] = field(default_factory=dict)
    # Bytes all sources' segments may take; None: no cap.
    max_bytes: int | None = None
    # Sources whose days another replica enforces (it runs them): replicas sharing the index
    # each keep the retention of the sources they run, whoever wrote the segments.
    elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RetentionReport:
    deleted: list[Segment]
    # Bytes still over the cap after every unheld segment went: held recordings outrank the cap.
    over_cap: int
    holds_dropped: int

    @property
    def freed(self) -> int:
        return sum(seg.bytes for seg in self.deleted)


def enforce(index: RecordingIndex, policy: RetentionPolicy) -> RetentionReport:
    """Delete what the policy no longer keeps, oldest first; returns what went."""
    now = time.time()
    # Holds first: a hold that has expired protects nothing from this pass on.
    holds_dropped = index.drop_holds(now)
    deleted: list[Segment] = []
    for source in index.sources():
        if source in policy.elsewhere:
            continue
        days = policy.days.get(source, policy.default_days)
        for seg in index.expired_unheld(source, now - days * DAY_S, now):
            _delete(index, seg)
            deleted.append(seg)
    over = 0
    if policy.max_bytes is not None:
        over = index.total_bytes() - policy.max_bytes
        while over > 0:
            batch = index.oldest_unheld(now, BATCH)
            if not batch:
                break  # only held segments are left
            for seg in batch:
                if over <= 0:
                    break
                _delete(index, seg)
                deleted.append(seg)
                over -= seg.bytes
    return RetentionReport(deleted, max(over, 0), holds_dropped)


def _delete(index: RecordingIndex, seg: Segment) -> None:
    # The row goes first: a segment whose file is gone but whose row is left would be offered
    # for playback; a file without a row is only disk space (and rows are never half-written).
    index.remove(seg.id)
    seg.path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: other segments of that day are left
        seg.path.parent.rmdir()  # the day's folder, once its last segment is gone
