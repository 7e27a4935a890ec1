"""The recordings index of a service on its own: SQLite (WAL) in a 0600 file next to the segments.
The contract and its types: ``contract.py``; replicas share ``postgres_index.py`` instead."""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from detector_service.private import private_file
from detector_service.recording.contract import (
    JOIN_TOLERANCE_S,
    Coverage,
    Interval,
    RecordingIndex,
    Segment,
    coverage_of,
    segment_of,
)

__all__ = [
    "JOIN_TOLERANCE_S",
    "Coverage",
    "Interval",
    "RecordingIndex",
    "Segment",
    "SegmentIndex",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    run INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    path TEXT NOT NULL UNIQUE,
    bytes INTEGER NOT NULL,
    codec TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    params TEXT NOT NULL,
    closed INTEGER NOT NULL,
    writer TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS segments_by_source ON segments (source, start);
CREATE INDEX IF NOT EXISTS segments_by_start ON segments (start);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    keep_until REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detections (
    source TEXT NOT NULL,
    at REAL NOT NULL,
    frame BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS detections_by_source ON detections (source, at);
"""

_COLUMNS = "id, source, run, start, end, path, bytes, codec, width, height, params, writer"


class SegmentIndex:
    """SQLite (WAL) in a 0600 file; safe to share between the writer threads and readers."""

    def __init__(self, path: pathlib.Path) -> None:
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the mode of
        # the database, and segment paths and times say when each camera saw something.
        private_file(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        if "writer" not in columns:  # an index made before segments named their writer
            self._db.execute("ALTER TABLE segments ADD COLUMN writer TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def begin(self, seg: Segment) -> Segment:
        """Index a segment as it opens: if the writer dies, ``unfinished`` finds it."""
        with self._tx() as db:
            cursor = db.execute(
                f"INSERT INTO segments ({_COLUMNS}, closed) "
                "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    seg.source,
                    seg.run,
                    seg.start,
                    seg.end,
                    str(seg.path),
                    seg.bytes,
                    seg.codec,
                    seg.width,
                    seg.height,
                    seg.params,
                    seg.writer,
                ),
            )
            row_id = cursor.lastrowid
        assert row_id is not None
        return dataclasses.replace(seg, id=row_id)

    def finish(self, seg: Segment) -> None:
        """Record a closed segment's times and size; from now on it is part of the recording."""
        with self._tx() as db:
            db.execute(
                "UPDATE segments SET start = ?, end = ?, bytes = ?, closed = 1 WHERE id = ?",
                (seg.start, seg.end, seg.bytes, seg.id),
            )

    def unfinished(self, source: str) -> list[Segment]:
        """``source``'s segments begun and never finished: their writer died."""
        return self._select("WHERE source = ? AND NOT closed ORDER BY start", (source,))

    def run_for(self, source: str, params: str) -> int:
        """The run a new connection continues: the last one if its parameters are unchanged."""
        with self._lock:
            last = self._db.execute(
                "SELECT run, params FROM segments WHERE source = ? ORDER BY start DESC LIMIT 1",
                (source,),
            ).fetchone()
        if last is None:
            return 1
        run, last_params = int(last[0]), str(last[1])
        return run if last_params == params else run + 1

    def segments(self, source: str, start: float, end: float) -> list[Segment]:
        """The segments of ``source`` overlapping [start, end), oldest first."""
        return self._select(
            "WHERE source = ? AND closed AND end > ? AND start < ? ORDER BY start",
            (source, start, end),
        )

    def all_segments(self, source: str) -> list[Segment]:
        return self._select("WHERE source = ? AND closed ORDER BY start", (source,))

    def coverage(self, source: str, start: float, end: float) -> Coverage:
        return coverage_of(self.segments(source, start, end), start, end)

    def source_bytes(self, source: str) -> int:
        """Bytes of ``source``'s recording on disk (closed segments)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE source = ?", (source,)
            ).fetchone()
        return int(row[0])

    def has_source(self, source: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM segments WHERE source = ? LIMIT 1", (source,)
            ).fetchone()
        return row is not None

    def total_bytes(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()
        return int(row[0])

    def hold(self, source: str, start: float, end: float, keep_until: float, reason: str) -> int:
        """Keep ``source``'s segments overlapping [start, end) until ``keep_until``."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO holds (source, start, end, keep_until, reason) VALUES (?, ?, ?, ?, ?)",
                (source, start, end, keep_until, reason),
            )
            row_id = cursor.lastrowid
        assert row_id is not None
        return row_id

    def expired_unheld(self, source: str, before: float, now: float) -> list[Segment]:
        """``source``'s segments that ended before ``before`` and no live hold keeps."""
        return self._select(
            f"WHERE source = ? AND closed AND end < ? AND {_UNHELD} ORDER BY start",
            (source, before, now),
        )

    def oldest_unheld(self, now: float, limit: int) -> list[Segment]:
        """The oldest segments of all sources that no live hold keeps."""
        return self._select(f"WHERE closed AND {_UNHELD} ORDER BY start LIMIT ?", (now, limit))

    def sources(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT source FROM segments ORDER BY source")
            return [str(row[0]) for row in rows]

    def remove(self, segment_id: int) -> None:
        """Forget a segment, and the detections stored for its time: those it shows and those of
        the gap before it (back to the previous segment kept), which no video shows."""
        with self._tx() as db:
            row = db.execute(
                "SELECT source, start, end FROM segments WHERE id = ?", (segment_id,)
            ).fetchone()
            db.execute("DELETE FROM segments WHERE id = ?", (segment_id,))
            if row is None:
                return
            source, start, end = row
            before = db.execute(
                "SELECT COALESCE(MAX(end), 0) FROM segments WHERE source = ? AND end <= ?",
                (source, start),
            ).fetchone()[0]
            db.execute(
                "DELETE FROM detections WHERE source = ? AND at >= ? AND at < ?",
                (source, before, end),
            )

    def add_detections(self, rows: Sequence[tuple[str, float, bytes]]) -> None:
        """Store detected frames, (source, capture time, serialized FrameDetections) each, in one
        transaction."""
        with self._tx() as db:
            db.executemany("INSERT INTO detections (source, at, frame) VALUES (?, ?, ?)", rows)

    def detections(self, source: str, start: float, end: float) -> list[bytes]:
        """The stored frames of ``source`` captured in [start, end), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT frame FROM detections WHERE source = ? AND at >= ? AND at < ? ORDER BY at",
                (source, start, end),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def drop_holds(self, now: float) -> int:
        """Forget holds whose retention has ended; returns how many."""
        with self._tx() as db:
            return db.execute("DELETE FROM holds WHERE keep_until <= ?", (now,)).rowcount

    def _select(self, where: str, args: tuple[object, ...]) -> list[Segment]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM segments s {where}", args).fetchall()
        return [segment_of(r, pathlib.Path(r[5])) for r in rows]


# A segment is held while a hold on its source overlaps it and has not expired (the ? is now).
_UNHELD = (
    "NOT EXISTS (SELECT 1 FROM holds h WHERE h.source = s.source AND h.start < s.end "
    "AND h.end > s.start AND h.keep_until > ?)"
)
