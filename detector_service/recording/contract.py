"""The recordings index's contract: segments, holds and detections of every source, kept by the
embedded SQLite file (``index.py``, one service) or by PostgreSQL (``postgres_index.py``, shared by
the replicas, whose segment files lie on a volume they all see). ``tests/.../recording/
test_index_contract.py`` runs one suite against both."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Segments closer than this count as one covered interval: consecutive segments of one
# connection share their boundary exactly, so only float rounding needs forgiving.
JOIN_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Segment:
    source: str
    run: int
    start: float
    end: float
    path: pathlib.Path
    bytes: int
    codec: str
    width: int
    height: int
    # A digest of codec, size and decoder configuration: segments with equal params join into
    # one file without re-encoding.
    params: str
    # Assigned by the index when the segment is added.
    id: int = 0
    # The replica that wrote it ("" for a service on its own): a replica finishes the segments
    # its own killed run left open when it starts, those of another once it owns their source.
    writer: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


def segment_of(row: Sequence[Any], path: pathlib.Path) -> Segment:
    """The segment of an index row: (id, source, run, start, end, path as kept, bytes, codec,
    width, height, params, writer), with the path the index resolves it to."""
    return Segment(
        id=int(row[0]),
        source=str(row[1]),
        run=int(row[2]),
        start=float(row[3]),
        end=float(row[4]),
        path=path,
        bytes=int(row[6]),
        codec=str(row[7]),
        width=int(row[8]),
        height=int(row[9]),
        params=str(row[10]),
        writer=str(row[11]),
    )


@dataclass(frozen=True)
class Interval:
    start: float
    end: float


@dataclass(frozen=True)
class Coverage:
    """What of [start, end) is recorded (``covered``) and what is not (``gaps``), in order."""

    covered: list[Interval]
    gaps: list[Interval]


class RecordingIndex(Protocol):
    """Which file holds which seconds of which source, what is held, and the detected boxes.
    Blocking calls, safe from any thread. Only closed segments are part of the recording."""

    def begin(self, seg: Segment) -> Segment:
        """Index a segment as it opens (``unfinished`` finds it if its writer dies); with its id."""
        ...

    def finish(self, seg: Segment) -> None:
        """Record a closed segment's times and size; from now on it is part of the recording."""
        ...

    def unfinished(self, source: str) -> list[Segment]:
        """``source``'s segments begun and never finished, oldest first."""
        ...

    def run_for(self, source: str, params: str) -> int:
        """The run a new connection continues: the last one if its parameters are unchanged."""
        ...

    def segments(self, source: str, start: float, end: float) -> list[Segment]:
        """The closed segments of ``source`` overlapping [start, end), oldest first."""
        ...

    def all_segments(self, source: str) -> list[Segment]: ...
    def coverage(self, source: str, start: float, end: float) -> Coverage: ...
    def source_bytes(self, source: str) -> int: ...
    def has_source(self, source: str) -> bool: ...
    def total_bytes(self) -> int: ...
    def sources(self) -> list[str]: ...

    def hold(self, source: str, start: float, end: float, keep_until: float, reason: str) -> int:
        """Keep ``source``'s segments overlapping [start, end) until ``keep_until``."""
        ...

    def drop_holds(self, now: float) -> int:
        """Forget holds whose retention has ended; returns how many."""
        ...

    def expired_unheld(self, source: str, before: float, now: float) -> list[Segment]:
        """``source``'s closed segments that ended before ``before`` and no live hold keeps."""
        ...

    def oldest_unheld(self, now: float, limit: int) -> list[Segment]:
        """The oldest closed segments of all sources that no live hold keeps."""
        ...

    def remove(self, segment_id: int) -> None:
        """Forget a segment, and the detections stored for its time: those it shows and those of
        the gap before it (back to the previous segment kept), which no video shows."""
        ...

    def add_detections(self, rows: Sequence[tuple[str, float, bytes]]) -> None:
        """Store detected frames, (source, capture time, serialized FrameDetections) each."""
        ...

    def detections(self, source: str, start: float, end: float) -> list[bytes]:
        """The stored frames of ``source`` captured in [start, end), oldest first."""
        ...

    def close(self) -> None: ...


def coverage_of(segments: Sequence[Segment], start: float, end: float) -> Coverage:
    """The covered intervals and gaps of [start, end), from its segments (oldest first)."""
    covered: list[Interval] = []
    for seg in segments:
        lo, hi = max(seg.start, start), min(seg.end, end)
        if covered and lo - covered[-1].end <= JOIN_TOLERANCE_S:
            covered[-1] = Interval(covered[-1].start, max(covered[-1].end, hi))
        else:
            covered.append(Interval(lo, hi))
    gaps: list[Interval] = []
    cursor = start
    for part in covered:
        if part.start - cursor > JOIN_TOLERANCE_S:
            gaps.append(Interval(cursor, part.start))
        cursor = part.end
    if end - cursor > JOIN_TOLERANCE_S:
        gaps.append(Interval(cursor, end))
    return Coverage(covered, gaps)
