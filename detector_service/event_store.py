"""Where the source-event log keeps its events: the contract, and the embedded SQLite file.

One connection on one dedicated thread: ``insert`` only queues the row (called from the sources'
processing threads, which never wait for the disk) and rows are written in the order queued;
reads queue behind them. Events past their retention are deleted when the store opens and at
most hourly while it runs. PostgreSQL keeps the same contract for replicas
(``postgres_events.py``); the live stream on top of either is ``events.EventLog``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pathlib
import sqlite3
import time
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service import page_tokens
from detector_service.sqlite_thread import SQLiteThread
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Events past their retention are deleted at most this often (on the writer thread, with a write).
PRUNE_EVERY_NS = 3600 * 10**9
_TOKEN_KIND = "events"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    at_ns INTEGER NOT NULL,
    data BLOB NOT NULL,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at_ns, seq);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source_id, at_ns, seq);
"""


class EventKeeping(Protocol):
    """Where ``EventLog`` keeps events. ``insert`` is called from any thread and never waits."""

    def insert(self, event: pb.SourceEvent, snapshot: bytes | None) -> None:
        """Keep ``event`` (complete: id and time set, no snapshot in it) and its frame."""

    async def list(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        """A page, newest first. Raises ``ValueError`` for a bad page token."""

    def close(self) -> None:
        """Finish queued writes and close (blocking)."""


class SQLiteEvents:
    def __init__(self, path: pathlib.Path, retention_s: float) -> None:
        """Open (creating if needed) the database; blocks briefly, so call it off the loop.
        Events older than ``retention_s`` (by their time) are deleted, snapshots included."""
        self.path = path
        self._retention_ns = int(retention_s * 1e9)
        self._pruned_ns = 0
        self._sql = SQLiteThread(path, "events", self._setup, wal=True)

    def _setup(self, db: sqlite3.Connection) -> None:
        db.executescript(_SCHEMA)
        self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        # On the writer thread: a busy line's events and snapshots must not fill the disk.
        now = time.time_ns()
        db.execute("DELETE FROM events WHERE at_ns < ?", (now - self._retention_ns,))
        self._pruned_ns = now

    def insert(self, event: pb.SourceEvent, snapshot: bytes | None) -> None:
        row = (
            event.id,
            event.source_id,
            int(event.kind),
            event.at.ToNanoseconds(),
            event.SerializeToString(),
            snapshot or None,
        )

        def go() -> None:
            self._sql.db.execute(
                "INSERT INTO events (id, source_id, kind, at_ns, data, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            if time.time_ns() - self._pruned_ns > PRUNE_EVERY_NS:
                self._prune(self._sql.db)

        try:
            future = self._sql.submit(go)
        except RuntimeError:
            return  # closed meanwhile
        future.add_done_callback(log_failure)

    async def list(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        size, sql, params = list_query(request, "?")

        def go() -> pb.ListEventsResponse:
            return page(self._sql.db.execute(sql, params).fetchall(), size)

        return await self._sql.run(go)

    def close(self) -> None:
        self._sql.close()


def list_query(
    request: pb.ListEventsRequest, mark: str, table: str = "events"
) -> tuple[int, str, list[Any]]:
    """The page size, SQL (``mark`` for a parameter) and parameters of a listing; its rows are
    (seq, at_ns, data, snapshot or NULL). Raises ``ValueError`` for a bad page token."""
    size = min(request.page_size, MAX_PAGE_SIZE) if request.page_size else DEFAULT_PAGE_SIZE
    after = page_tokens.decode(_TOKEN_KIND, request.page_token) if request.page_token else None
    sql = "SELECT seq, at_ns, data, " + ("snapshot" if request.include_snapshot else "NULL")
    sql += f" FROM {table} WHERE 1=1"
    params: list[Any] = []
    if request.source_id:
        sql += f" AND source_id = {mark}"
        params.append(request.source_id)
    if request.HasField("start"):
        sql += f" AND at_ns >= {mark}"
        params.append(_clamped_ns(request.start))
    if request.HasField("end"):
        sql += f" AND at_ns < {mark}"
        params.append(_clamped_ns(request.end))
    if request.kinds:
        sql += f" AND kind IN ({', '.join([mark] * len(request.kinds))})"
        params.extend(int(k) for k in request.kinds)
    if after is not None:
        # Keyset paging: stable while new events keep arriving at the top.
        sql += f" AND (at_ns, seq) < ({mark}, {mark})"
        params.extend(after)
    sql += f" ORDER BY at_ns DESC, seq DESC LIMIT {mark}"
    params.append(size + 1)
    return size, sql, params


def page(rows: list[Any], size: int) -> pb.ListEventsResponse:
    """The response of a listing's rows (one more than ``size`` when there is a next page)."""
    response = pb.ListEventsResponse()
    for row in rows[:size]:
        event = response.events.add()
        event.ParseFromString(row[2])
        if row[3]:
            event.snapshot_jpeg = row[3]
    if len(rows) > size:
        seq, at_ns = rows[size - 1][:2]
        response.next_page_token = page_tokens.encode(_TOKEN_KIND, at_ns, seq)
    return response


def log_failure(future: concurrent.futures.Future[None]) -> None:
    # Logged only: the event was streamed all the same.
    exc = None if future.cancelled() else future.exception()
    if exc is not None:
        log.error("event log: storing an event failed: %s", exc)


def _clamped_ns(ts: Timestamp) -> int:
    """A bound in nanoseconds a 64-bit integer can hold: times past 2262 (or before 1677) as far
    as it goes, which no event reaches."""
    return max(-(2**63), min(ts.ToNanoseconds(), 2**63 - 1))
