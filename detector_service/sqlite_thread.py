"""One SQLite connection on one dedicated thread, as the detector's embedded stores keep it.

Callers on any thread only queue work: it runs in the order queued (a write never overtakes an
earlier one, a read sees every write queued before it) and the event loop never blocks on
SQLite. The file and its directory are owner-only: they hold what the cameras saw, or their
passwords.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pathlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from detector_service.private import private_dir, private_file

T = TypeVar("T")


class SQLiteThread:
    def __init__(
        self,
        path: pathlib.Path,
        name: str,
        setup: Callable[[sqlite3.Connection], None],
        wal: bool,
    ) -> None:
        """Open (creating if needed) the database and run ``setup`` on it, on the thread; blocks
        briefly, so call it off the loop. ``name`` names the thread and the store in errors."""
        self.path = path
        self._name = name
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None
        self._executor.submit(self._connect, setup, wal).result()

    def _connect(self, setup: Callable[[sqlite3.Connection], None], wal: bool) -> None:
        private_dir(self.path.parent)
        private_file(self.path)
        if wal:
            # SQLite gives its -wal and -shm files the database file's mode; an older one may not.
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    private_file(side)
        # Without WAL, the default rollback journal: its side file lives only during a write,
        # and SQLite creates it with the database file's mode.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL survives process crashes; a power cut may lose the last
            # few writes, which were also streamed when they happened.
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        setup(db)
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        """The connection: only on the thread, from work queued with ``submit`` or ``run``."""
        if self._db is None:
            raise RuntimeError(f"{self._name} store is closed")
        return self._db

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn``; raises ``RuntimeError`` once closed."""
        return self._executor.submit(fn)

    async def run(self, fn: Callable[[], T]) -> T:
        # Submitted now, in the caller's order; awaited without blocking the loop.
        return await asyncio.wrap_future(self._executor.submit(fn))

    def close(self) -> None:
        """Finish queued work and close (blocking); closing again does nothing."""

        def go() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            self._executor.submit(go).result()
        except RuntimeError:
            return  # already closed
        self._executor.shutdown(wait=True)
