"""The PostgreSQL job store's news between replicas: NOTIFY on write, LISTEN in the background.

Separate from the store's queries because it has a life of its own: each watcher holds a
connection outside the pool for as long as the store is open, and rides out database restarts
by listening again (backing off, logging once per outage). Channels: ``analyzer_events``
("job:sequence"), ``analyzer_jobs`` ("queued:job", "cancel:job"); a notification is delivered
on commit of the transaction that sent it.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from analyzer_service.postgres_link import said, where
from analyzer_service.postgres_schema import Connection
from analyzer_service.store import Listener
from vigil.core.backoff import Backoff

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "analyzer_events"
JOBS_CHANNEL = "analyzer_jobs"
# A watcher whose connection broke tries again after this, backing off to RELISTEN_MAX_S.
RELISTEN_S = 0.5
RELISTEN_MAX_S = 5.0


async def notify(conn: Connection, channel: str, payload: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


class Watchers:
    """The listening tasks of one store, each on a connection of its own, until ``close``."""

    def __init__(self, url: str, connect_timeout: int) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, listener: Listener) -> None:
        task = asyncio.create_task(self._listen(listener), name="analyzer-store-listen")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self, listener: Listener) -> None:
        backoff = Backoff(RELISTEN_S, RELISTEN_MAX_S)
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=self._connect_timeout
                )
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    if lost:
                        log.info("listening for other replicas again (%s)", where(self._url))
                        lost = False
                    backoff.reset()
                    # Whatever was queued while nobody listened here: look now. (Followers
                    # missed news too; they re-read the store within following.FOLLOW_POLL_S.)
                    listener.job_queued("")
                    async for note in conn.notifies():
                        _tell(listener, note.channel, note.payload)
            except psycopg.Error as exc:
                # Once per outage: a database restarting makes this fail on every try.
                if not lost:
                    log.warning(
                        "listening for other replicas: %s; trying again", said(exc, self._url)
                    )
                lost = True
            await asyncio.sleep(backoff.next())


def _tell(listener: Listener, channel: str, payload: str) -> None:
    if channel == EVENTS_CHANNEL:
        job_id, _, sequence = payload.rpartition(":")
        listener.event_stored(job_id, int(sequence))
        return
    kind, _, job_id = payload.partition(":")
    if kind == "cancel":
        listener.cancel_requested(job_id)
    else:
        listener.job_queued(job_id)
