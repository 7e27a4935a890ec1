"""Writes to PostgreSQL that outlive the database being away: queued in order on one thread, each
retried with backoff until the database takes it, so no incident or event is lost across a
restart of PostgreSQL.

Bounded: at most ``limit`` writes wait. One more while that many wait is dropped, counted
(``dropped``) and logged, never waited for: the callers are the frame path. Only the database
being away is retried (``psycopg.OperationalError``: a refused or broken connection, the pool
timing out, the server shutting down); any other failure is the write's own, logged and not
retried. A write whose commit was answered by a connection that then broke runs again, so every
write must be idempotent (upserts by incident id, events keyed by their id).

Reads go through the same thread (``read``), behind the writes queued before them, so a read sees
every write made before it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")

# Writes waiting for the database, at most: about an hour of a busy site's incidents and events.
BACKLOG = 10_000
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
# A drop is logged the first time and then once in this many, not once a frame.
LOG_EVERY = 100


class BacklogFull(Exception):
    """A write dropped: ``BACKLOG`` writes already wait for the database."""


class RetryingWriter:
    def __init__(
        self, name: str, said: Callable[[BaseException], str], limit: int = BACKLOG
    ) -> None:
        self.name = name
        self.limit = limit
        #: Writes dropped because the backlog was full.
        self.dropped = 0
        self._said = said
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._waiting = 0
        self._closing = threading.Event()

    def write(self, fn: Callable[[], T], what: str) -> concurrent.futures.Future[T]:
        """Queue ``fn`` (never waits); RuntimeError once closed."""
        with self._lock:
            full = self._waiting >= self.limit
            if full:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._waiting += 1
        if full:
            if dropped == 1 or dropped % LOG_EVERY == 0:
                log.error(
                    "%s: %d writes wait for the database already: dropped %s (%d dropped so far)",
                    self.name,
                    self.limit,
                    what,
                    dropped,
                )
            refused: concurrent.futures.Future[T] = concurrent.futures.Future()
            refused.set_exception(BacklogFull(what))
            return refused
        try:
            future = self._executor.submit(self._retrying, fn, what)
        except RuntimeError:
            self._left()
            raise
        future.add_done_callback(lambda f: self._finished(f, what))
        return future

    def read(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` once, behind the writes queued so far."""
        return self._executor.submit(fn)

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        delay = FIRST_DELAY_S
        while True:
            try:
                return fn()
            except psycopg.OperationalError as exc:
                if self._closing.is_set():
                    raise  # closing with the database away: logged as lost
                if delay == FIRST_DELAY_S:
                    log.warning(
                        "%s: %s waits for the database (%s); retrying",
                        self.name,
                        what,
                        self._said(exc),
                    )
                self._closing.wait(delay)
                delay = min(delay * 2, MAX_DELAY_S)

    def _finished(self, future: concurrent.futures.Future[T], what: str) -> None:
        self._left()
        exc = None if future.cancelled() else future.exception()
        if exc is not None:
            log.error("%s: %s failed: %s", self.name, what, self._said(exc))

    def _left(self) -> None:
        with self._lock:
            self._waiting -= 1

    def close(self) -> None:
        """Finish the queued writes (each tried once more if the database is away; then lost,
        logged) and stop (blocks until done)."""
        self._closing.set()
        self._executor.shutdown(wait=True)
