"""Incident history in PostgreSQL, shared by every detector replica naming the database.

The same contract as the SQLite store (``keeping.IncidentKeeping``): writes queue on one
dedicated thread (over a psycopg 3 pool) and return at once, so no frame waits for the network,
and run in the order they were queued; reads queue behind them. A write made while PostgreSQL is
away waits, with those after it, and is retried until the database is back (bounded:
``postgres_writer.py``); each is idempotent, so one retried after a lost answer is not doubled.
Any replica lists, counts and reviews every source's incidents: they share one table. The review
lives in columns of its own, never in the message, so a later save of the message never undoes a
review made on any replica.

Events cross replicas: ``announce`` appends what this replica streamed to
``detector_incident_events`` and NOTIFYs its number; ``watch`` follows that table on a connection
of its own and hands the other replicas' events to this one's streams. A notification only says
that there is something new: the events are read from the table, after the last number seen, so
a watcher that lost its connection catches up when it is back, and nothing is lost or doubled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from detector_service.incidents.keeping import (
    MIN_NS,
    clamped,
    decode_token,
    encode_token,
    incident_of,
    stats_of,
    stripped,
)
from detector_service.incidents.postgres_schema import migrate
from detector_service.incidents.review import CONFIRMED, DISMISSED, FALSE_ALARM_SQL, rejected
from detector_service.postgres_migrations import Connection
from detector_service.postgres_pool import open_pool, said
from detector_service.postgres_watch import Feed, Watcher
from detector_service.postgres_writer import RetryingWriter
from vigil.core.urls import masked
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "detector_incidents"
# Events kept for watchers catching up (the incidents themselves are kept for good).
KEEP_EVENTS = 10_000
_READ_EVENTS = 500

_SAVE = """
    INSERT INTO detector_incidents (id, replica, source_id, class_name, rule_id, opened_ns,
        closed_ns, rejected, data, snapshot)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO UPDATE SET replica = excluded.replica, rule_id = excluded.rule_id,
        closed_ns = excluded.closed_ns, rejected = excluded.rejected, data = excluded.data,
        snapshot = excluded.snapshot
"""
_STATS = f"""
    SELECT source_id, class_name, rule_id, count(*), count(*) FILTER (WHERE {FALSE_ALARM_SQL}),
        count(*) FILTER (WHERE decision = {CONFIRMED}),
        count(*) FILTER (WHERE decision = {DISMISSED}), COALESCE(sum(rejected), 0)
    FROM detector_incidents
    WHERE (%(source)s = '' OR source_id = %(source)s) AND opened_ns >= %(since)s
    GROUP BY source_id, class_name, rule_id ORDER BY source_id, class_name, rule_id
"""
# Keyed, so that an announcement retried after its commit's answer was lost is not doubled.
_ANNOUNCE = """
    WITH next AS (
        UPDATE detector_incident_counter SET last = last + 1
        WHERE NOT EXISTS (SELECT FROM detector_incident_events WHERE key = %(key)s)
        RETURNING last
    ), added AS (
        INSERT INTO detector_incident_events (seq, replica, incident_id, data, key)
        SELECT last, %(replica)s, %(incident)s, %(data)s, %(key)s FROM next RETURNING seq
    )
    SELECT seq FROM added
"""
_EVENTS_AFTER = """
    SELECT e.seq, e.replica, e.data, i.snapshot FROM detector_incident_events AS e
    LEFT JOIN detector_incidents AS i ON i.id = e.incident_id
    WHERE e.seq > %s ORDER BY e.seq LIMIT %s
"""


def _event_of(data: bytes, snapshot: bytes | None) -> pb.StreamIncidentsResponse:
    event = pb.StreamIncidentsResponse.FromString(data)
    if snapshot is not None:
        event.incident.snapshot_jpeg = snapshot
    return event


_LAST = "SELECT last FROM detector_incident_counter"
_FEED = Feed("incident", CHANNEL, _LAST, _EVENTS_AFTER, _READ_EVENTS, _event_of)
# The watchers' connections, by name in pg_stat_activity.
WATCHER_NAME = _FEED.application_name


class IncidentStoreUnavailable(Exception):
    """The database cannot be used; the message names host and port, never a password."""


class PostgresIncidentStore:
    def __init__(
        self,
        url: str,
        *,
        replica: str,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Connect, bring the tables up to date and fill the pool (blocking: call at startup).

        Raises ``IncidentStoreUnavailable`` when the database cannot be reached or refuses them.
        """
        self._url = url
        self.replica = replica
        self._timeout = max(1, round(connect_timeout_s))
        self._pool = open_pool(
            url,
            name="detector-incidents",
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            setup=migrate,
            unavailable=IncidentStoreUnavailable,
        )
        self._writer = RetryingWriter("incident store", self._said)
        # Incidents this replica opened since are its own, open in its memory: never left open.
        self._started_ns = time.time_ns()
        self._watcher: Watcher[pb.StreamIncidentsResponse] | None = None
        log.info("incidents kept in %s", masked(url))

    def _said(self, exc: BaseException) -> str:
        return said(exc, self._url)

    # --- writes: any thread, never waits -------------------------------------------------------

    def save(self, incident: pb.Incident) -> concurrent.futures.Future[None]:
        # Serialised now, on the caller's thread: the caller goes on changing its copy.
        row = (
            incident.id,
            self.replica,
            incident.source_id,
            incident.class_name,
            incident.rule_id,
            incident.opened_at.ToNanoseconds(),
            incident.closed_at.ToNanoseconds() if incident.HasField("closed_at") else None,
            int(rejected(incident)),
            stripped(incident),
            incident.snapshot_jpeg,
        )

        def go(conn: Connection) -> None:
            conn.execute(_SAVE, row)

        return self._write(go, f"save incident {incident.id}")

    def set_clip_path(self, incident_id: str, clip_path: str) -> concurrent.futures.Future[None]:
        def go(conn: Connection) -> None:
            with conn.transaction():
                found = conn.execute(
                    "SELECT data FROM detector_incidents WHERE id = %s FOR UPDATE", (incident_id,)
                ).fetchone()
                if found is None:
                    raise KeyError(incident_id)
                incident = pb.Incident.FromString(found[0])
                incident.clip_path = clip_path
                conn.execute(
                    "UPDATE detector_incidents SET data = %s WHERE id = %s",
                    (incident.SerializeToString(), incident_id),
                )

        return self._write(go, f"set clip of incident {incident_id}")

    def review(self, incident_id: str, review: pb.Review) -> concurrent.futures.Future[bool]:
        row = (review.decision, review.SerializeToString(), incident_id)

        def go(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE detector_incidents SET decision = %s, review = %s WHERE id = %s", row
            )
            return cursor.rowcount == 1

        return self._write(go, f"review incident {incident_id}")

    def update(
        self, incident_id: str, change: Callable[[pb.Incident], None]
    ) -> concurrent.futures.Future[pb.Incident | None]:
        def go(conn: Connection) -> pb.Incident | None:
            with conn.transaction():
                found = conn.execute(
                    "SELECT data, review, snapshot FROM detector_incidents WHERE id = %s"
                    " FOR UPDATE",
                    (incident_id,),
                ).fetchone()
                if found is None:
                    return None
                incident = pb.Incident.FromString(found[0])
                change(incident)
                data = incident.SerializeToString()
                conn.execute(
                    "UPDATE detector_incidents SET data = %s, rule_id = %s, rejected = %s"
                    " WHERE id = %s",
                    (data, incident.rule_id, int(rejected(incident)), incident_id),
                )
            return incident_of(data, found[1], found[2])

        return self._write(go, f"update incident {incident_id}")

    def close_left_open(
        self, source_id: str, closed_ns: int
    ) -> concurrent.futures.Future[list[pb.Incident]]:
        """Close, at ``closed_ns``, the incidents of ``source_id`` opened before it and still
        open: left so by a replica that stopped running the source without closing them (it
        died), or by this one before it restarted; not those this process has open (it ran the
        source before, lost its lease in an outage, and closes them itself). Returns them as
        closed (snapshot included), to be streamed."""

        def go(conn: Connection) -> list[pb.Incident]:
            closed = []
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, data, review, snapshot FROM detector_incidents WHERE source_id = %s"
                    " AND closed_ns IS NULL AND opened_ns < %s"
                    " AND (replica <> %s OR opened_ns < %s) FOR UPDATE",
                    (source_id, closed_ns, self.replica, self._started_ns),
                ).fetchall()
                for incident_id, data, review, snapshot in rows:
                    incident = pb.Incident.FromString(data)
                    incident.closed_at.FromNanoseconds(closed_ns)
                    data = incident.SerializeToString()
                    conn.execute(
                        "UPDATE detector_incidents SET data = %s, closed_ns = %s, replica = %s"
                        " WHERE id = %s",
                        (data, closed_ns, self.replica, incident_id),
                    )
                    closed.append(incident_of(data, review, snapshot))
            return closed

        return self._write(go, f"close the incidents left open on {source_id}")

    def announce(self, event: pb.StreamIncidentsResponse) -> None:
        data = pb.StreamIncidentsResponse(type=event.type, alert=event.alert)
        data.incident.ParseFromString(stripped(event.incident))
        row = {
            "replica": self.replica,
            "incident": event.incident.id,
            "data": data.SerializeToString(),
            "key": uuid.uuid4().hex,
        }

        def go(conn: Connection) -> None:
            with conn.transaction():
                found = conn.execute(_ANNOUNCE, row).fetchone()
                if found is None:
                    return  # announced by an earlier try whose answer was lost
                seq = int(found[0])
                conn.execute(
                    "DELETE FROM detector_incident_events WHERE seq <= %s", (seq - KEEP_EVENTS,)
                )
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))

        self._write(go, f"announce an event of incident {event.incident.id}")

    def stats(
        self, source_id: str = "", since_ns: int | None = None
    ) -> concurrent.futures.Future[list[pb.IncidentStats]]:
        params = {"source": source_id, "since": MIN_NS if since_ns is None else clamped(since_ns)}

        def go(conn: Connection) -> list[pb.IncidentStats]:
            return [stats_of(row) for row in conn.execute(_STATS, params).fetchall()]

        return self._writer.read(lambda: self._with(go))

    def _with(self, fn: Callable[[Connection], T]) -> T:
        with self._pool.connection() as conn:
            return fn(conn)

    def _write(self, fn: Callable[[Connection], T], what: str) -> concurrent.futures.Future[T]:
        # A failure is logged there: the incident stays in memory and in the event streams.
        return self._writer.write(lambda: self._with(fn), what)

    # --- reads: the event loop -----------------------------------------------------------------

    async def _read(self, query: str, params: Any) -> list[tuple[Any, ...]]:
        def go(conn: Connection) -> list[tuple[Any, ...]]:
            return conn.execute(query, params).fetchall()

        return await asyncio.wrap_future(self._writer.read(lambda: self._with(go)))

    async def opened_since(self, since_ns: int) -> list[pb.Incident]:
        rows = await self._read(
            "SELECT data, review, snapshot FROM detector_incidents"
            " WHERE replica = %s AND opened_ns >= %s ORDER BY opened_ns, seq",
            (self.replica, clamped(since_ns)),
        )
        return [incident_of(*row) for row in rows]

    async def get(self, incident_id: str, include_snapshot: bool = True) -> pb.Incident | None:
        snapshot = "snapshot" if include_snapshot else "NULL"
        rows = await self._read(
            f"SELECT data, review, {snapshot} FROM detector_incidents WHERE id = %s",
            (incident_id,),
        )
        return incident_of(*rows[0]) if rows else None

    async def list(
        self, source_id: str, page_size: int, page_token: str, include_snapshot: bool
    ) -> tuple[list[pb.Incident], str]:
        after = decode_token(page_token) if page_token else None
        snapshot = "snapshot" if include_snapshot else "NULL"
        sql = f"SELECT seq, opened_ns, data, review, {snapshot} FROM detector_incidents WHERE true"
        params: list[str | int] = []
        if source_id:
            sql += " AND source_id = %s"
            params.append(source_id)
        if after is not None:
            # Keyset paging: stable while new incidents keep arriving at the top.
            sql += " AND (opened_ns, seq) < (%s, %s)"
            params.extend(after)
        sql += " ORDER BY opened_ns DESC, seq DESC LIMIT %s"
        params.append(page_size + 1)  # one more than asked says whether there is a next page
        rows = await self._read(sql, params)
        incidents = [incident_of(*row[2:]) for row in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            seq, opened_ns = rows[page_size - 1][:2]
            token = encode_token(opened_ns, seq)
        return incidents, token

    # --- the other replicas' events ------------------------------------------------------------

    def watch(self, deliver: Callable[[pb.StreamIncidentsResponse], None]) -> None:
        """Hand every event the other replicas announce from now on to ``deliver`` (called on
        the watcher's thread, in the order they were announced), until ``close``. Blocking:
        call it off the loop."""
        self._watcher = Watcher(
            self._url, _FEED, replica=self.replica, connect_timeout=self._timeout, deliver=deliver
        )
        self._watcher.start()

    def close(self) -> None:
        """Finish queued writes, stop watching and close (blocks until done)."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._writer.close()
        self._pool.close()
