"""Incident history in an embedded SQLite file.

One connection on one dedicated thread: the processing threads that open and close incidents
only queue a write and go on (no frame ever waits for the disk), the event loop never blocks on
SQLite, and writes happen in the order they were queued, so an incident's close never overtakes
its open. Reads queue on the same thread: a read sees every write queued before it. The snapshot
JPEG lives in its own column, last, so listings without snapshots never read its pages.

An operator's review lives in columns of its own (``decision``, ``review``), never in the blob:
the tracker saves an open incident's whole message again when it closes or is verified, and that
must not undo a review made meanwhile. Reads merge the review into the message and derive
``false_alarm`` (``review.is_false_alarm``). ``rule_id`` and ``rejected`` copy what the counting
of ``stats`` needs out of the blob, so that it reads one index, not every message; triggers of
the connection keep them in step with ``data`` whichever write changes it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pathlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from detector_service.incidents.keeping import (
    clamped,
    decode_token,
    encode_token,
    incident_of,
    stats_of,
    stripped,
)
from detector_service.incidents.review import FALSE_ALARM_SQL, rejected
from detector_service.sqlite_thread import SQLiteThread
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source_id TEXT NOT NULL,
    class_name TEXT NOT NULL,
    opened_ns INTEGER NOT NULL,
    closed_ns INTEGER,
    data BLOB NOT NULL,
    snapshot BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (opened_ns, seq);
CREATE INDEX IF NOT EXISTS incidents_by_source ON incidents (source_id, opened_ns, seq);
"""
# Added after the first release: ``_migrate`` adds them to older databases (and fills them in).
_COLUMNS = {
    "rule_id": "TEXT NOT NULL DEFAULT ''",
    "rejected": "INTEGER NOT NULL DEFAULT 0",
    "decision": "INTEGER NOT NULL DEFAULT 0",
    "review": "BLOB",
}
# Covers the statistics' grouping, filters and sums: counted without reading the table.
_STATS_INDEX = (
    "CREATE INDEX IF NOT EXISTS incidents_stats ON incidents"
    " (source_id, class_name, rule_id, opened_ns, decision, rejected)"
)


class IncidentStore:
    def __init__(self, path: pathlib.Path) -> None:
        """Open (creating if needed) the database; blocks briefly, so call it at startup."""
        self.path = path
        self._sql = SQLiteThread(path, "incidents", _setup, wal=True)

    # --- writes: any thread, never waits -------------------------------------------------------

    def save(self, incident: pb.Incident) -> concurrent.futures.Future[None]:
        """Insert or replace ``incident`` (by id); returns at once, the write happens in order."""
        # Serialised now, on the caller's thread: the caller goes on changing its copy.
        row = (
            incident.id,
            incident.source_id,
            incident.class_name,
            incident.opened_at.ToNanoseconds(),
            incident.closed_at.ToNanoseconds() if incident.HasField("closed_at") else None,
            stripped(incident),
            incident.snapshot_jpeg,
        )

        def go() -> None:
            # The review columns are left alone: a review outlives the tracker's copies.
            self._sql.db.execute(
                "INSERT INTO incidents"
                " (id, source_id, class_name, opened_ns, closed_ns, data, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET closed_ns = excluded.closed_ns,"
                " data = excluded.data, snapshot = excluded.snapshot",
                row,
            )

        return self._write(go, f"save incident {incident.id}")

    def set_clip_path(self, incident_id: str, clip_path: str) -> concurrent.futures.Future[None]:
        """Record the clip of an incident already saved; returns at once."""

        def go() -> None:
            found = self._sql.db.execute(
                "SELECT data FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if found is None:
                raise KeyError(incident_id)
            incident = pb.Incident.FromString(found[0])
            incident.clip_path = clip_path
            self._sql.db.execute(
                "UPDATE incidents SET data = ? WHERE id = ?",
                (incident.SerializeToString(), incident_id),
            )

        return self._write(go, f"set clip of incident {incident_id}")

    def review(self, incident_id: str, review: pb.Review) -> concurrent.futures.Future[bool]:
        """Keep an operator's review of an incident, replacing an earlier one; the future says
        whether the incident exists. Returns at once."""
        row = (review.decision, review.SerializeToString(), incident_id)

        def go() -> bool:
            cursor = self._sql.db.execute(
                "UPDATE incidents SET decision = ?, review = ? WHERE id = ?", row
            )
            return cursor.rowcount == 1

        return self._write(go, f"review incident {incident_id}")

    def stats(
        self, source_id: str = "", since_ns: int | None = None
    ) -> concurrent.futures.Future[list[pb.IncidentStats]]:
        """Incidents and false alarms per (source, class, rule), sorted by them, of one source
        (all when empty) opened at or after ``since_ns`` (all when None). Any thread: the
        metrics count on the scrape's thread. Raises ``RuntimeError`` once the store is closed."""
        sql, params = stats_query(source_id, since_ns)

        def go() -> list[pb.IncidentStats]:
            return [stats_of(row) for row in self._sql.db.execute(sql, params)]

        return self._sql.submit(go)

    def update(
        self, incident_id: str, change: Callable[[pb.Incident], None]
    ) -> concurrent.futures.Future[pb.Incident | None]:
        """Apply ``change`` to the stored incident (in order with the other writes); the future
        holds the incident as changed, snapshot included, or None when it is not stored."""

        def go() -> pb.Incident | None:
            found = self._sql.db.execute(
                "SELECT data, review, snapshot FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if found is None:
                return None
            incident = pb.Incident.FromString(found[0])
            change(incident)
            self._sql.db.execute(
                "UPDATE incidents SET data = ? WHERE id = ?",
                (incident.SerializeToString(), incident_id),
            )
            return incident_of(incident.SerializeToString(), found[1], found[2])

        return self._write(go, f"update incident {incident_id}")

    def announce(self, event: pb.StreamIncidentsResponse) -> None:
        """Nothing to do: one detector, which streamed the event itself."""

    async def opened_since(self, since_ns: int) -> list[pb.Incident]:
        """Incidents opened at or after ``since_ns``, oldest first, with their snapshots."""

        def go() -> list[pb.Incident]:
            rows = self._sql.db.execute(
                "SELECT data, review, snapshot FROM incidents WHERE opened_ns >= ? "
                "ORDER BY opened_ns, seq",
                (since_ns,),
            ).fetchall()
            return [incident_of(*row) for row in rows]

        return await self._sql.run(go)

    def _write(self, fn: Callable[[], T], what: str) -> concurrent.futures.Future[T]:
        future = self._sql.submit(fn)

        def check(f: concurrent.futures.Future[T]) -> None:
            # Logged only: the incident stays in memory and in the event streams.
            if f.cancelled() or f.exception() is None:
                return
            log.error("incident store: %s failed: %s", what, f.exception())

        future.add_done_callback(check)
        return future

    # --- reads: the event loop -----------------------------------------------------------------

    async def get(self, incident_id: str, include_snapshot: bool = True) -> pb.Incident | None:
        def go() -> pb.Incident | None:
            found = self._sql.db.execute(
                "SELECT data, review, snapshot FROM incidents WHERE id = ?"
                if include_snapshot
                else "SELECT data, review, NULL FROM incidents WHERE id = ?",
                (incident_id,),
            ).fetchone()
            return None if found is None else incident_of(*found)

        return await self._sql.run(go)

    async def list(
        self, source_id: str, page_size: int, page_token: str, include_snapshot: bool
    ) -> tuple[list[pb.Incident], str]:
        """One page, newest opening first, and the token of the next page ("" when none).

        Raises ``ValueError`` for a token this store did not make.
        """
        after = decode_token(page_token) if page_token else None
        columns = "seq, opened_ns, data, review, " + ("snapshot" if include_snapshot else "NULL")

        def go() -> tuple[list[pb.Incident], str]:
            sql = f"SELECT {columns} FROM incidents WHERE 1=1"
            params: list[str | int] = []
            if source_id:
                sql += " AND source_id = ?"
                params.append(source_id)
            if after is not None:
                # Keyset paging: stable while new incidents keep arriving at the top.
                sql += " AND (opened_ns, seq) < (?, ?)"
                params.extend(after)
            sql += " ORDER BY opened_ns DESC, seq DESC LIMIT ?"
            # One more than asked says whether there is a next page.
            params.append(page_size + 1)
            rows = self._sql.db.execute(sql, params).fetchall()
            incidents = [incident_of(*row[2:]) for row in rows[:page_size]]
            token = ""
            if len(rows) > page_size:
                seq, opened_ns = rows[page_size - 1][:2]
                token = encode_token(opened_ns, seq)
            return incidents, token

        return await self._sql.run(go)

    def close(self) -> None:
        """Finish queued writes and close the database (blocks until they are done)."""
        self._sql.close()


def _setup(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    _functions(db)
    _migrate(db)
    _derive(db)


def stats_query(source_id: str, since_ns: int | None) -> tuple[str, list[str | int]]:
    """The statistics' SQL and its parameters (answered from the ``incidents_stats`` index)."""
    sql = (
        "SELECT source_id, class_name, rule_id, COUNT(*),"
        f" SUM({FALSE_ALARM_SQL}), SUM(decision = ?), SUM(decision = ?), SUM(rejected)"
        " FROM incidents WHERE 1=1"
    )
    params: list[str | int] = [pb.REVIEW_DECISION_CONFIRMED, pb.REVIEW_DECISION_DISMISSED]
    if source_id:
        sql += " AND source_id = ?"
        params.append(source_id)
    if since_ns is not None:
        sql += " AND opened_ns >= ?"
        params.append(clamped(since_ns))
    sql += " GROUP BY source_id, class_name, rule_id ORDER BY source_id, class_name, rule_id"
    return sql, params


def _derive(db: sqlite3.Connection) -> None:
    """Keep ``rule_id`` and ``rejected`` in step with ``data`` on every insert and every update of
    it, whatever the write (temporary triggers: the file itself never names these functions)."""
    derive = (
        "BEGIN UPDATE incidents SET rule_id = incident_rule_id(NEW.data),"
        " rejected = incident_rejected(NEW.data) WHERE seq = NEW.seq; END"
    )
    db.execute(f"CREATE TEMP TRIGGER incidents_derive_insert AFTER INSERT ON incidents {derive}")
    db.execute(
        f"CREATE TEMP TRIGGER incidents_derive_update AFTER UPDATE OF data ON incidents {derive}"
    )


def _functions(db: sqlite3.Connection) -> None:
    """The columns derived from a message, as SQL functions of this connection."""
    db.create_function(
        "incident_rule_id", 1, lambda data: _message(data).rule_id, deterministic=True
    )
    db.create_function(
        "incident_rejected", 1, lambda data: int(rejected(_message(data))), deterministic=True
    )


def _message(data: bytes) -> pb.Incident:
    return pb.Incident.FromString(data)


def _migrate(db: sqlite3.Connection) -> None:
    """Give a database from before operator reviews their columns; fill in ``rule_id`` and
    ``rejected`` from the messages already kept, which may carry them (one pass, at startup)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(incidents)")}
    missing = [name for name in _COLUMNS if name not in present]
    if missing:
        db.execute("BEGIN")
        for name in missing:
            db.execute(f"ALTER TABLE incidents ADD COLUMN {name} {_COLUMNS[name]}")
        if {"rule_id", "rejected"} & set(missing):
            db.execute(
                "UPDATE incidents SET rule_id = incident_rule_id(data),"
                " rejected = incident_rejected(data)"
            )
        db.execute("COMMIT")
    db.execute(_STATS_INDEX)
