"""The source-event log in PostgreSQL, shared by every detector replica naming the database.

The same contract as the SQLite file (``event_store.EventKeeping``): ``insert`` queues the row on
one dedicated thread (over a psycopg 3 pool) and returns at once; rows are written in the order
queued, and reads queue behind them. One made while PostgreSQL is away waits and is retried until
it is back (``postgres_writer.py``); an event already stored (by an earlier try whose answer was
lost) is not stored again. Any replica lists every source's events.

Each row is numbered from one counter row, taken in the inserting transaction, so numbers commit
in order, and the insert NOTIFYs its number; ``watch`` follows the table on a connection of its
own and hands the other replicas' events to this one's streams, reading the rows after the last
number it saw: a notification only wakes it, and after a lost connection it catches up, so
nothing is lost or doubled. Events past their retention are deleted at most hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from detector_service.event_store import PRUNE_EVERY_NS, list_query, page
from detector_service.postgres_migrations import Connection, migrate
from detector_service.postgres_pool import open_pool, said
from detector_service.postgres_watch import Feed, Watcher
from detector_service.postgres_writer import RetryingWriter
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

CHANNEL = "detector_events"
_READ = 200
_MIGRATION_LOCK = 0x5649_4749_4C45_5654  # "VIGILEVT"
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE detector_events (
        seq bigint PRIMARY KEY,
        id text NOT NULL UNIQUE,
        replica text NOT NULL,
        source_id text NOT NULL,
        kind integer NOT NULL,
        at_ns bigint NOT NULL,
        data bytea NOT NULL,
        snapshot bytea
    );
    CREATE INDEX detector_events_by_time ON detector_events (at_ns, seq);
    CREATE INDEX detector_events_by_source ON detector_events (source_id, at_ns, seq);
    CREATE TABLE detector_event_counter (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        last bigint NOT NULL
    );
    INSERT INTO detector_event_counter (last) VALUES (0);
    """,
)
# Nothing when the event is stored already: an insert retried after its commit's answer was lost.
_INSERT = """
    WITH next AS (
        UPDATE detector_event_counter SET last = last + 1
        WHERE NOT EXISTS (SELECT FROM detector_events WHERE id = %(id)s)
        RETURNING last
    )
    INSERT INTO detector_events (seq, id, replica, source_id, kind, at_ns, data, snapshot)
    SELECT last, %(id)s, %(replica)s, %(source)s, %(kind)s, %(at)s, %(data)s, %(snapshot)s
    FROM next RETURNING seq
"""


def _event_of(data: bytes, snapshot: bytes | None) -> pb.SourceEvent:
    event = pb.SourceEvent.FromString(data)
    if snapshot is not None:
        event.snapshot_jpeg = snapshot
    return event


_AFTER = (
    "SELECT seq, replica, data, snapshot FROM detector_events WHERE seq > %s ORDER BY seq LIMIT %s"
)
_FEED = Feed("event", CHANNEL, "SELECT last FROM detector_event_counter", _AFTER, _READ, _event_of)


class EventStoreUnavailable(Exception):
    """The database cannot be used; the message names host and port, never a password."""


class PostgresEvents:
    def __init__(
        self,
        url: str,
        *,
        replica: str,
        retention_s: float,
        pool_size: int = 2,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Connect, bring the tables up to date, delete expired events and fill the pool
        (blocking: call off the loop). Raises ``EventStoreUnavailable`` when it cannot."""
        self._url = url
        self.replica = replica
        self._retention_ns = int(retention_s * 1e9)
        self._pruned_ns = 0
        self._timeout = max(1, round(connect_timeout_s))
        self._pool = open_pool(
            url,
            name="detector-events",
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            setup=self._setup,
            unavailable=EventStoreUnavailable,
        )
        self._writer = RetryingWriter("event log", self._said)
        self._watcher: Watcher[pb.SourceEvent] | None = None

    def _said(self, exc: BaseException) -> str:
        return said(exc, self._url)

    def _setup(self, conn: Connection, place: str) -> None:
        migrate(conn, place, group="events", lock=_MIGRATION_LOCK, migrations=_MIGRATIONS)
        self._prune(conn)

    def _prune(self, conn: Connection) -> None:
        now = time.time_ns()
        conn.execute("DELETE FROM detector_events WHERE at_ns < %s", (now - self._retention_ns,))
        self._pruned_ns = now

    def insert(self, event: pb.SourceEvent, snapshot: bytes | None) -> None:
        row = {
            "id": event.id,
            "replica": self.replica,
            "source": event.source_id,
            "kind": int(event.kind),
            "at": event.at.ToNanoseconds(),
            "data": event.SerializeToString(),
            "snapshot": snapshot or None,
        }

        def go() -> None:
            with self._pool.connection() as conn:
                with conn.transaction():
                    found = conn.execute(_INSERT, row).fetchone()
                    if found is not None:  # else stored by an earlier try
                        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(found[0])))
                if time.time_ns() - self._pruned_ns > PRUNE_EVERY_NS:
                    self._prune(conn)

        # Kept and retried while the database is away; a failure is logged there.
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._writer.write(go, f"store event {event.id}")

    async def list(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        size, sql, params = list_query(request, "%s", "detector_events")

        def go() -> pb.ListEventsResponse:
            with self._pool.connection() as conn:
                return page(conn.execute(sql, params).fetchall(), size)

        return await asyncio.wrap_future(self._writer.read(go))

    def watch(self, deliver: Callable[[pb.SourceEvent], None]) -> None:
        """Hand every event the other replicas record from now on to ``deliver`` (on the
        watcher's thread, in the order they were recorded), until ``close``. Blocks for a
        connection at most: call it off the loop."""
        self._watcher = Watcher(
            self._url, _FEED, replica=self.replica, connect_timeout=self._timeout, deliver=deliver
        )
        self._watcher.start()

    def close(self) -> None:
        """Finish queued writes, stop watching and close (blocking)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._writer.close()
        self._pool.close()
