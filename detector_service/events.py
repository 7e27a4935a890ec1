"""The source-event log: zone and camera-health events, stored in SQLite and streamed live.

``record`` is called from any thread (the sources' processing threads, the camera-health checks)
and only queues work: the row goes to the writer thread (one connection, writes in order, as the
incident store does) and the event to the event loop, which offers it to every subscriber. A
subscriber's queue is bounded; when it is full the oldest waiting event is dropped (counted and
logged): a stuck client that catches up sees what happens now, and the log keeps everything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import contextlib
import logging
import pathlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.private import private_dir, private_file
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
SOURCE_EVENT = pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT
# Events past their retention are deleted at most this often (on the writer thread, with a write).
PRUNE_EVERY_NS = 3600 * 10**9

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
_TOKEN_KIND = "events"


class EventSubscription:
    """One StreamIncidents call's source events; lives on the event loop."""

    def __init__(self, log_: EventLog, source_id: str, include_snapshot: bool, maxsize: int):
        self.source_id = source_id
        self.include_snapshot = include_snapshot
        self._log = log_
        self._items: collections.deque[pb.StreamIncidentsResponse] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        #: Events lost because this subscriber had ``maxsize`` events waiting.
        self.dropped = 0

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> pb.StreamIncidentsResponse:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._log._subscriptions.discard(self)

    def _offer(self, event: pb.SourceEvent) -> None:
        if self._closed or (self.source_id and self.source_id != event.source_id):
            return
        message = pb.StreamIncidentsResponse(type=SOURCE_EVENT, event=event)
        if not self.include_snapshot:
            message.event.ClearField("snapshot_jpeg")
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("source-event subscriber stuck: %d events dropped", self.dropped)
        self._items.append(message)
        self._ready.set()


class EventLog:
    """Stores, lists and streams source events. ``record`` is thread-safe and never blocks."""

    def __init__(
        self,
        path: pathlib.Path,
        loop: asyncio.AbstractEventLoop,
        retention_s: float,
        subscriber_queue: int = 256,
    ) -> None:
        """Open (creating if needed) the database; blocks briefly, so call it off the loop.
        Events older than ``retention_s`` (by their time) are deleted, snapshots included."""
        self.path = path
        self.loop = loop
        self.subscriber_queue = subscriber_queue
        self._retention_ns = int(retention_s * 1e9)
        self._pruned_ns = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="events")
        self._db: sqlite3.Connection | None = None
        self._subscriptions: set[EventSubscription] = set()
        self._closed = False
        self._executor.submit(self._connect).result()

    def _connect(self) -> None:
        # Snapshots show what the cameras saw: owner-only, like the incidents next to it.
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                private_file(side)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db
        self._prune()

    def _prune(self) -> None:
        # On the writer thread: a busy line's events and snapshots must not fill the disk.
        now = time.time_ns()
        self.db.execute("DELETE FROM events WHERE at_ns < ?", (now - self._retention_ns,))
        self._pruned_ns = now

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("event log is closed")
        return self._db

    # --- any thread ----------------------------------------------------------------------------

    def record(self, event: pb.SourceEvent, snapshot_jpeg: bytes | None) -> None:
        """Store ``event`` (given an id and the time now when it has none) and stream it;
        returns at once.

        ``snapshot_jpeg`` is the frame of the event, stored with it and sent to subscribers that
        asked for snapshots. The caller may go on changing its ``event``: it is copied here.
        """
        if self._closed:
            return
        stored = pb.SourceEvent()
        stored.CopyFrom(event)
        stored.id = stored.id or uuid.uuid4().hex
        if not stored.HasField("at"):
            stored.at.GetCurrentTime()
        stored.ClearField("snapshot_jpeg")
        stored.has_snapshot = bool(snapshot_jpeg)
        row = (
            stored.id,
            stored.source_id,
            int(stored.kind),
            stored.at.ToNanoseconds(),
            stored.SerializeToString(),
            snapshot_jpeg or None,
        )

        def go() -> None:
            self.db.execute(
                "INSERT INTO events (id, source_id, kind, at_ns, data, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
            if time.time_ns() - self._pruned_ns > PRUNE_EVERY_NS:
                self._prune()

        try:
            future = self._executor.submit(go)
        except RuntimeError:
            return  # closed meanwhile
        future.add_done_callback(_log_failure)
        streamed = pb.SourceEvent()
        streamed.CopyFrom(stored)
        if snapshot_jpeg:
            streamed.snapshot_jpeg = snapshot_jpeg
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is streaming
            self.loop.call_soon_threadsafe(self._fanout, streamed)

    # --- event loop ----------------------------------------------------------------------------

    def subscribe(
        self, source_id: str = "", *, include_snapshot: bool = False
    ) -> EventSubscription:
        """Follow events from now on, of one source or (empty) all."""
        sub = EventSubscription(self, source_id, include_snapshot, self.subscriber_queue)
        if self._closed:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def _fanout(self, event: pb.SourceEvent) -> None:
        for sub in list(self._subscriptions):
            sub._offer(event)

    async def list(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        """A page, newest first. Raises ``ValueError`` for a bad page token."""
        size = min(request.page_size, MAX_PAGE_SIZE) if request.page_size else DEFAULT_PAGE_SIZE
        after = _decode_token(request.page_token) if request.page_token else None
        sql = "SELECT seq, at_ns, data" + (", snapshot" if request.include_snapshot else "")
        sql += " FROM events WHERE 1=1"
        params: list[str | int] = []
        if request.source_id:
            sql += " AND source_id = ?"
            params.append(request.source_id)
        if request.HasField("start"):
            sql += " AND at_ns >= ?"
            params.append(_clamped_ns(request.start))
        if request.HasField("end"):
            sql += " AND at_ns < ?"
            params.append(_clamped_ns(request.end))
        if request.kinds:
            sql += f" AND kind IN ({', '.join('?' * len(request.kinds))})"
            params.extend(int(k) for k in request.kinds)
        if after is not None:
            # Keyset paging: stable while new events keep arriving at the top.
            sql += " AND (at_ns, seq) < (?, ?)"
            params.extend(after)
        sql += " ORDER BY at_ns DESC, seq DESC LIMIT ?"
        params.append(size + 1)

        def go() -> pb.ListEventsResponse:
            rows = self.db.execute(sql, params).fetchall()
            response = pb.ListEventsResponse()
            for row in rows[:size]:
                event = response.events.add()
                event.ParseFromString(row[2])
                if len(row) > 3 and row[3]:
                    event.snapshot_jpeg = row[3]
            if len(rows) > size:
                seq, at_ns = rows[size - 1][:2]
                response.next_page_token = _encode_token(at_ns, seq)
            return response

        return await self._run(go)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn))

    # --- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish queued writes, close the database and end the subscriptions (blocking)."""
        if self._closed:
            return
        self._closed = True

        def go() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._executor.submit(go).result()
        self._executor.shutdown(wait=True)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._end_subscriptions)

    def _end_subscriptions(self) -> None:
        for sub in list(self._subscriptions):
            sub.close()


async def merged(
    *streams: AsyncIterator[pb.StreamIncidentsResponse],
) -> AsyncIterator[pb.StreamIncidentsResponse]:
    """Messages of several streams as each arrives; ends when all have ended."""
    pending: dict[asyncio.Future[pb.StreamIncidentsResponse], AsyncIterator[Any]] = {
        asyncio.ensure_future(anext(s)): s for s in streams
    }
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                stream = pending.pop(future)
                try:
                    message = future.result()
                except StopAsyncIteration:
                    continue
                pending[asyncio.ensure_future(anext(stream))] = stream
                yield message
    finally:
        for future in pending:
            future.cancel()


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    # Logged only: the event was streamed all the same.
    if not future.cancelled() and future.exception() is not None:
        log.error("event log: storing an event failed: %s", future.exception())


def _clamped_ns(ts: Timestamp) -> int:
    """A bound in nanoseconds SQLite can hold: times past 2262 (or before 1677) as far as it
    goes, which no event reaches."""
    return max(-(2**63), min(ts.ToNanoseconds(), 2**63 - 1))


def _encode_token(at_ns: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_KIND}:{at_ns}:{seq}".encode()).decode()


def _decode_token(token: str) -> tuple[int, int]:
    try:
        kind, at_ns, seq = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if kind != _TOKEN_KIND:
            raise ValueError(token)
        return int(at_ns), int(seq)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("invalid page token") from exc
