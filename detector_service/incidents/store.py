"""Incident history in an embedded SQLite file.

One connection on one dedicated thread: the processing threads that open and close incidents
only queue a write and go on (no frame ever waits for the disk), the event loop never blocks on
SQLite, and writes happen in the order they were queued, so an incident's close never overtakes
its open. Reads queue on the same thread: a read sees every write queued before it. The snapshot
JPEG lives in its own column, last, so listings without snapshots never read its pages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import logging
import pathlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from detector_service.private import private_dir, private_file
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

_TOKEN_KIND = "incidents"


class IncidentStore:
    def __init__(self, path: pathlib.Path) -> None:
        """Open (creating if needed) the database; blocks briefly, so call it at startup."""
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="incidents")
        self._db: sqlite3.Connection | None = None
        self._executor.submit(self._connect).result()

    def _connect(self) -> None:
        # Owner-only: SQLite gives its -wal and -shm files the database file's mode.
        private_dir(self.path.parent)
        private_file(self.path)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                private_file(side)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL survives process crashes; a power cut may lose the last
        # few incidents, which were also streamed and posted when they happened.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("incident store is closed")
        return self._db

    # --- writes: any thread, never waits -------------------------------------------------------

    def save(self, incident: pb.Incident) -> concurrent.futures.Future[None]:
        """Insert or replace ``incident`` (by id); returns at once, the write happens in order."""
        # Serialised now, on the caller's thread: the caller goes on changing its copy.
        snapshot = incident.snapshot_jpeg
        stripped = pb.Incident()
        stripped.CopyFrom(incident)
        stripped.ClearField("snapshot_jpeg")
        row = (
            incident.id,
            incident.source_id,
            incident.class_name,
            incident.opened_at.ToNanoseconds(),
            incident.closed_at.ToNanoseconds() if incident.HasField("closed_at") else None,
            stripped.SerializeToString(),
            snapshot,
        )

        def go() -> None:
            self.db.execute(
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
            found = self.db.execute(
                "SELECT data FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if found is None:
                raise KeyError(incident_id)
            incident = pb.Incident.FromString(found[0])
            incident.clip_path = clip_path
            self.db.execute(
                "UPDATE incidents SET data = ? WHERE id = ?",
                (incident.SerializeToString(), incident_id),
            )

        return self._write(go, f"set clip of incident {incident_id}")

    def update(
        self, incident_id: str, change: Callable[[pb.Incident], None]
    ) -> concurrent.futures.Future[pb.Incident | None]:
        """Apply ``change`` to the stored incident (in order with the other writes); the future
        holds the incident as changed, snapshot included, or None when it is not stored."""

        def go() -> pb.Incident | None:
            found = self.db.execute(
                "SELECT data, snapshot FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
            if found is None:
                return None
            incident = pb.Incident.FromString(found[0])
            change(incident)
            self.db.execute(
                "UPDATE incidents SET data = ? WHERE id = ?",
                (incident.SerializeToString(), incident_id),
            )
            incident.snapshot_jpeg = found[1]
            return incident

        future = self._executor.submit(go)
        future.add_done_callback(_log_failed(f"update incident {incident_id}"))
        return future

    async def opened_since(self, since_ns: int) -> list[pb.Incident]:
        """Incidents opened at or after ``since_ns``, oldest first, with their snapshots."""

        def go() -> list[pb.Incident]:
            rows = self.db.execute(
                "SELECT data, snapshot FROM incidents WHERE opened_ns >= ? ORDER BY opened_ns, seq",
                (since_ns,),
            ).fetchall()
            return [_incident(row) for row in rows]

        return await self._run(go)

    def _write(self, fn: Callable[[], None], what: str) -> concurrent.futures.Future[None]:
        future = self._executor.submit(fn)

        def check(f: concurrent.futures.Future[None]) -> None:
            # Logged only: the incident stays in memory and in the event streams.
            if f.cancelled() or f.exception() is None:
                return
            log.error("incident store: %s failed: %s", what, f.exception())

        future.add_done_callback(check)
        return future

    # --- reads: the event loop -----------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn))

    async def get(self, incident_id: str, include_snapshot: bool = True) -> pb.Incident | None:
        def go() -> pb.Incident | None:
            found = self.db.execute(
                "SELECT data, snapshot FROM incidents WHERE id = ?"
                if include_snapshot
                else "SELECT data FROM incidents WHERE id = ?",
                (incident_id,),
            ).fetchone()
            return None if found is None else _incident(found)

        return await self._run(go)

    async def list(
        self, source_id: str, page_size: int, page_token: str, include_snapshot: bool
    ) -> tuple[list[pb.Incident], str]:
        """One page, newest opening first, and the token of the next page ("" when none).

        Raises ``ValueError`` for a token this store did not make.
        """
        after = _decode_token(page_token) if page_token else None
        columns = "seq, opened_ns, data, snapshot" if include_snapshot else "seq, opened_ns, data"

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
            rows = self.db.execute(sql, params).fetchall()
            incidents = [_incident(row[2:]) for row in rows[:page_size]]
            token = ""
            if len(rows) > page_size:
                seq, opened_ns = rows[page_size - 1][:2]
                token = _encode_token(opened_ns, seq)
            return incidents, token

        return await self._run(go)

    def close(self) -> None:
        """Finish queued writes and close the database (blocks until they are done)."""

        def go() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            self._executor.submit(go).result()
        except RuntimeError:
            return  # already closed
        self._executor.shutdown(wait=True)


def _log_failed(what: str) -> Callable[[concurrent.futures.Future[T]], None]:
    def check(future: concurrent.futures.Future[T]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("incident store: %s failed: %s", what, future.exception())

    return check


def _incident(row: tuple[bytes, ...]) -> pb.Incident:
    incident = pb.Incident.FromString(row[0])
    if len(row) > 1:
        incident.snapshot_jpeg = row[1]
    return incident


def _encode_token(opened_ns: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_KIND}:{opened_ns}:{seq}".encode()).decode()


def _decode_token(token: str) -> tuple[int, int]:
    try:
        kind, opened_ns, seq = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if kind != _TOKEN_KIND:
            raise ValueError(token)
        return int(opened_ns), int(seq)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("invalid page token") from exc
