"""Sources added at run time, kept in an embedded SQLite file so they come back after a restart.

Each row is the source's spec as the user gave it, real URIs included: the service must reopen
the camera after a restart, so the password is kept, in a file only the service's user may read
(0600 in the 0700 data directory), and is masked in everything the service hands out, as for any
source. One connection on one dedicated thread: writes happen in the order they were asked for
(an add and a quick remove of the same id never swap), and the event loop never waits on SQLite.
"""

from __future__ import annotations

import pathlib
import sqlite3
import time
from typing import TypeVar

from detector_service.sqlite_thread import SQLiteThread
from vigil.core.errors import AlreadyExists
from vigil.detector.v1 import detector_service_pb2 as pb

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY,
    added_ns INTEGER NOT NULL,
    spec BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    id TEXT PRIMARY KEY,
    base BLOB NOT NULL,
    spec BLOB NOT NULL
);
"""


class SourceStore:
    def __init__(self, path: pathlib.Path) -> None:
        """Open (creating if needed) the database; blocks briefly, so call it off the loop."""
        self.path = path
        self._sql = SQLiteThread(path, "sources", _setup, wal=False)

    def load(self) -> list[pb.SourceSpec]:
        """Every kept source, in the order they were added (blocking: call off the loop)."""

        def go() -> list[pb.SourceSpec]:
            rows = self._sql.db.execute("SELECT spec FROM sources ORDER BY added_ns, id").fetchall()
            return [pb.SourceSpec.FromString(row[0]) for row in rows]

        return self._sql.submit(go).result()

    async def put(self, spec: pb.SourceSpec) -> None:
        """Keep ``spec`` (real URIs included), replacing a kept source of the same id."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            self._sql.db.execute(
                "INSERT INTO sources (id, added_ns, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET added_ns = excluded.added_ns,"
                " spec = excluded.spec",
                row,
            )

        await self._sql.run(go)

    async def add(self, spec: pb.SourceSpec) -> None:
        """Keep a new source; ``AlreadyExists`` when one of its id is kept already."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            try:
                self._sql.db.execute(
                    "INSERT INTO sources (id, added_ns, spec) VALUES (?, ?, ?)", row
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"source {spec.id!r} already exists") from None

        await self._sql.run(go)

    async def delete(self, source_id: str) -> bool:
        """Forget a kept source, or a configured one's update; False when there was neither."""

        def go() -> bool:
            db = self._sql.db
            found = db.execute("DELETE FROM sources WHERE id = ?", (source_id,)).rowcount
            found += db.execute("DELETE FROM overrides WHERE id = ?", (source_id,)).rowcount
            return found > 0

        return await self._sql.run(go)

    def load_overrides(self) -> list[tuple[pb.SourceSpec, pb.SourceSpec]]:
        """The updates of configured sources, each with the configuration it was made on
        (blocking: call off the loop)."""

        def go() -> list[tuple[pb.SourceSpec, pb.SourceSpec]]:
            rows = self._sql.db.execute("SELECT base, spec FROM overrides ORDER BY id").fetchall()
            return [(pb.SourceSpec.FromString(b), pb.SourceSpec.FromString(s)) for b, s in rows]

        return self._sql.submit(go).result()

    async def put_override(self, base: pb.SourceSpec, spec: pb.SourceSpec) -> None:
        """Keep the update ``spec`` of the configured source ``base`` (real URIs included)."""
        row = (spec.id, base.SerializeToString(deterministic=True), spec.SerializeToString())

        def go() -> None:
            self._sql.db.execute(
                "INSERT INTO overrides (id, base, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET base = excluded.base, spec = excluded.spec",
                row,
            )

        await self._sql.run(go)

    async def delete_override(self, source_id: str) -> None:
        def go() -> None:
            self._sql.db.execute("DELETE FROM overrides WHERE id = ?", (source_id,))

        await self._sql.run(go)

    def close(self) -> None:
        """Finish queued writes and close (blocking: call off the loop)."""
        self._sql.close()


def _setup(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
