"""Following what the other detector replicas append to a numbered table (incident events, source
events), on a connection of its own that LISTENs for the inserts' notifications.

A notification only says that there is something new: the rows are read from the table, after the
last number seen, so a watcher that lost its connection catches up when it is back, and nothing
is lost or doubled. The rows this replica wrote are skipped: it streamed them when they happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg

from detector_service.postgres_migrations import Connection
from detector_service.postgres_pool import said

log = logging.getLogger(__name__)
T = TypeVar("T")

# A watcher whose connection broke tries again this often; it also reads the table this often
# when no notification came, so a notification missed while it was reading costs this at most.
RELISTEN_S = 1.0
POLL_S = 1.0


@dataclass(frozen=True)
class Feed(Generic[T]):
    """A numbered table of ``kind`` ("incident", "event") to follow: ``rows_after`` selects
    ``(seq, replica, data, snapshot)`` after a number (``%s``) ordered by number, at most ``read``
    (``%s``) of them; ``counter`` selects the last number given; ``decode`` turns ``data`` and
    ``snapshot`` into an event."""

    kind: str
    channel: str
    counter: str
    rows_after: str
    read: int
    decode: Callable[[bytes, bytes | None], T]

    @property
    def application_name(self) -> str:
        """The watcher's connection, by name in pg_stat_activity."""
        return f"vigil-{self.kind}-watch"


class Watcher(Generic[T]):
    def __init__(
        self,
        url: str,
        feed: Feed[T],
        *,
        replica: str,
        connect_timeout: int,
        deliver: Callable[[T], None],
    ) -> None:
        self._url = url
        self._feed = feed
        self._replica = replica
        self._timeout = connect_timeout
        self._deliver = deliver
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"{feed.kind}-watch", daemon=True)

    def start(self) -> None:
        """Start following; blocks for a connection at most, so a row written once this returns
        is delivered."""
        self._thread.start()
        self._listening.wait(self._timeout)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _watch(self) -> None:
        feed = self._feed
        last: int | None = None
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=self._timeout,
                    application_name=feed.application_name,
                ) as conn:
                    conn.execute(f"LISTEN {feed.channel}")
                    if last is None:  # rows from before the start are not this run's
                        row = conn.execute(feed.counter).fetchone()
                        last = int(row[0]) if row is not None else 0
                    self._listening.set()
                    while not self._stopping.is_set():
                        last = self._catch_up(conn, last)
                        for _ in conn.notifies(timeout=POLL_S, stop_after=1):
                            pass
            except psycopg.Error as exc:
                log.warning("following other replicas' %ss: %s", feed.kind, said(exc, self._url))
                self._stopping.wait(RELISTEN_S)

    def _catch_up(self, conn: Connection, last: int) -> int:
        feed = self._feed
        while True:
            rows: list[tuple[Any, ...]] = conn.execute(
                feed.rows_after, (last, feed.read)
            ).fetchall()
            for seq, replica, data, snapshot in rows:
                last = int(seq)
                if replica == self._replica:
                    continue  # streamed here when it happened
                self._deliver(feed.decode(data, snapshot))
            if len(rows) < feed.read:
                return last
