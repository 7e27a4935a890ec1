"""Sources added at run time, kept in an embedded SQLite file so they come back after a restart.

Each row is the source's spec as the user gave it, real URIs included: the service must reopen
the camera after a restart, so the password is kept, in a file only the service's user may read
(0600 in the 0700 data directory), and is masked in everything the service hands out, as for any
source. One connection on one dedicated thread: writes happen in the order they were asked for
(an add and a quick remove of the same id never swap), and the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from detector_service.private import private_dir, private_file
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
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sources")
        self._db: sqlite3.Connection | None = None
        self._executor.submit(self._connect).result()

    def _connect(self) -> None:
        private_dir(self.path.parent)
        private_file(self.path)
        # The default rollback journal (not WAL): its side file lives only during a write, and
        # SQLite creates it with the database file's mode.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("source store is closed")
        return self._db

    def load(self) -> list[pb.SourceSpec]:
        """Every kept source, in the order they were added (blocking: call off the loop)."""

        def go() -> list[pb.SourceSpec]:
            rows = self.db.execute("SELECT spec FROM sources ORDER BY added_ns, id").fetchall()
            return [pb.SourceSpec.FromString(row[0]) for row in rows]

        return self._executor.submit(go).result()

    async def put(self, spec: pb.SourceSpec) -> None:
        """Keep ``spec`` (real URIs included), replacing a kept source of the same id."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            self.db.execute(
                "INSERT INTO sources (id, added_ns, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET added_ns = excluded.added_ns,"
                " spec = excluded.spec",
                row,
            )

        await self._run(go)

    async def add(self, spec: pb.SourceSpec) -> None:
        """Keep a new source; ``AlreadyExists`` when one of its id is kept already."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            try:
                self.db.execute("INSERT INTO sources (id, added_ns, spec) VALUES (?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"source {spec.id!r} already exists") from None

        await self._run(go)

    async def delete(self, source_id: str) -> bool:
        """Forget a kept source, or a configured one's update; False when there was neither."""

        def go() -> bool:
            found = self.db.execute("DELETE FROM sources WHERE id = ?", (source_id,)).rowcount
            found += self.db.execute("DELETE FROM overrides WHERE id = ?", (source_id,)).rowcount
            return found > 0

        return await self._run(go)

    def load_overrides(self) -> list[tuple[pb.SourceSpec, pb.SourceSpec]]:
        """The updates of configured sources, each with the configuration it was made on
        (blocking: call off the loop)."""

        def go() -> list[tuple[pb.SourceSpec, pb.SourceSpec]]:
            rows = self.db.execute("SELECT base, spec FROM overrides ORDER BY id").fetchall()
            return [(pb.SourceSpec.FromString(b), pb.SourceSpec.FromString(s)) for b, s in rows]

        return self._executor.submit(go).result()

    async def put_override(self, base: pb.SourceSpec, spec: pb.SourceSpec) -> None:
        """Keep the update ``spec`` of the configured source ``base`` (real URIs included)."""
        row = (spec.id, base.SerializeToString(deterministic=True), spec.SerializeToString())

        def go() -> None:
            self.db.execute(
                "INSERT INTO overrides (id, base, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET base = excluded.base, spec = excluded.spec",
                row,
            )

        await self._run(go)

    async def delete_override(self, source_id: str) -> None:
        def go() -> None:
            self.db.execute("DELETE FROM overrides WHERE id = ?", (source_id,))

        await self._run(go)

    async def _run(self, fn: Callable[[], T]) -> T:
        # Submitted now, in the caller's order; awaited without blocking the loop.
        return await asyncio.wrap_future(self._executor.submit(fn))

    def close(self) -> None:
        """Finish queued writes and close (blocking: call off the loop)."""

        def go() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._executor.submit(go).result()
        self._executor.shutdown(wait=True)
