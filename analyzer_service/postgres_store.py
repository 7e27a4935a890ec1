"""``JobStore`` in PostgreSQL, shared by every analyzer replica that names the same database.

psycopg 3 on a pool of connections. Each job's next event sequence (and chat turn) comes from its
row in ``analyzer_counters``, bumped by an upsert in the transaction that inserts the event: the
row stays locked until that transaction ends, so appends to one job from any number of replicas
take their numbers one after the other, and a rolled-back append gives its number back. Within one
store, appends to one job run one at a time in the order they were called, as SQLite's single
thread does, so a caller's events are numbered in the order it emitted them.

Leases live in the job's row (owner, fencing token, expiry from the database's clock): claims take
rows with ``FOR UPDATE SKIP LOCKED``, and a write under a lease locks the row and checks its token
first, so a claim and a fenced write to one job never interleave. Writes announce themselves with
``NOTIFY`` (``analyzer_events``: "job:sequence"; ``analyzer_jobs``: "queued:job", "cancel:job"),
delivered on commit to every store that ``watch``es, over a connection of its own.

Tables carry the ``analyzer_`` prefix (the other services may share the database) and are made by
numbered migrations, applied once under an advisory lock when a store opens. The connection
handling (``postgres_link``), the listening (``postgres_notify``) and the per-job ordering
(``in_order``) live in modules of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from analyzer_service.in_order import InOrder
from analyzer_service.postgres_link import pooled, said, where
from analyzer_service.postgres_notify import EVENTS_CHANNEL, JOBS_CHANNEL, Watchers, notify
from analyzer_service.postgres_schema import Connection, migrate, one
from analyzer_service.store import (
    UNFINISHED_STATES,
    ChatTurn,
    Event,
    Lease,
    LeaseLost,
    Listener,
    Renewal,
    StoreUnavailable,
    decode_page_token,
    encode_page_token,
    turn_from_json,
    turn_to_json,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.urls import masked

log = logging.getLogger(__name__)


# Held by whoever announces queue positions, so that announcements never cross.
_QUEUE_LOCK = 0x5649_4749_4C51_5545  # "VIGILQUE"

_WAITING = f"""
    SELECT id, announced FROM analyzer_jobs
    WHERE state = {pb.JOB_STATE_QUEUED} AND (owner IS NULL OR lease_expires < now())
    ORDER BY seq
"""

_NEXT_EVENT = """
    INSERT INTO analyzer_counters (job_id, last_event) VALUES (%s, 1)
    ON CONFLICT (job_id) DO UPDATE SET last_event = analyzer_counters.last_event + 1
    RETURNING last_event
"""
_NEXT_TURN = """
    INSERT INTO analyzer_counters (job_id, last_turn) VALUES (%s, 1)
    ON CONFLICT (job_id) DO UPDATE SET last_turn = analyzer_counters.last_turn + 1
    RETURNING last_turn
"""


class PostgresJobStore:
    def __init__(
        self, pool: AsyncConnectionPool[Connection], *, url: str = "", connect_timeout: int = 10
    ) -> None:
        self._pool = pool
        self._in_order = InOrder()
        self._url = url
        self._watchers = Watchers(url, connect_timeout)

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 8, connect_timeout_s: float = 10.0
    ) -> PostgresJobStore:
        """Connect, bring the tables up to date and fill the pool.

        Raises ``StoreUnavailable`` (naming host and port, never the password) when the database
        cannot be reached or refuses the tables.
        """
        place = f"PostgreSQL at {where(url)}"
        timeout = max(1, round(connect_timeout_s))
        try:
            conn = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=timeout
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to {place} ({said(exc, url)})") from None
        try:
            async with conn:
                await migrate(conn, place)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{place} refused the job tables ({said(exc, url)})") from None
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            kwargs={"autocommit": True, "connect_timeout": timeout},
            min_size=1,
            max_size=pool_size,
            open=False,
            # Connections broken by a database restart are replaced before use, not failed on.
            check=AsyncConnectionPool.check_connection,
            name="analyzer-store",
            timeout=connect_timeout_s,
        )
        try:
            await pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            await pool.close()
            raise StoreUnavailable(
                f"cannot connect to {place} (the pool got no connection)"
            ) from None
        log.info("jobs kept in %s (pool of %d)", masked(url), pool_size)
        return cls(pool, url=url, connect_timeout=timeout)

    async def create_video(self, video: pb.Video) -> None:
        await self._execute(
            "INSERT INTO analyzer_videos (id, data) VALUES (%s, %s)",
            (video.id, video.SerializeToString()),
        )

    async def get_video(self, video_id: str) -> pb.Video | None:
        rows = await self._fetch("SELECT data FROM analyzer_videos WHERE id = %s", (video_id,))
        return pb.Video.FromString(rows[0][0]) if rows else None

    async def create_job(
        self, job: pb.Job, *, owner: str | None = None, lease_s: float = 0.0
    ) -> Lease | None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO analyzer_jobs (id, video_id, state, data, owner, lease_token,"
                " lease_expires) VALUES (%s, %s, %s, %s, %s, %s,"
                " now() + make_interval(secs => %s))",
                (
                    job.id,
                    job.video.id,
                    job.state,
                    job.SerializeToString(),
                    owner,
                    0 if owner is None else 1,
                    lease_s,
                ),
            )
            if owner is None:
                await notify(conn, JOBS_CHANNEL, f"queued:{job.id}")
        return None if owner is None else Lease(job, owner, 1)

    async def get_job(self, job_id: str) -> pb.Job | None:
        rows = await self._fetch("SELECT data FROM analyzer_jobs WHERE id = %s", (job_id,))
        return pb.Job.FromString(rows[0][0]) if rows else None

    async def update_job(self, job: pb.Job, *, lease: Lease | None = None) -> None:
        snapshot = pb.Job()
        snapshot.CopyFrom(job)
        async with self._connection() as conn, conn.transaction():
            await _fence(conn, snapshot.id, lease)
            await _save_job(conn, snapshot)

    async def append_event(
        self, event: Event, *, job: pb.Job | None = None, lease: Lease | None = None
    ) -> Event:
        stored = Event()
        stored.CopyFrom(event)
        if not stored.HasField("time"):
            stored.time.GetCurrentTime()
        # Copies taken now: the caller may change its job while the write waits its turn.
        snapshot: pb.Job | None = None
        if job is not None:
            snapshot = pb.Job()
            snapshot.CopyFrom(job)
        async with (
            self._in_order(("event", stored.job_id)),
            self._connection() as conn,
            conn.transaction(),
        ):
            # Row locks in one order everywhere (job, then counter): no deadlocks.
            await _fence(conn, stored.job_id, lease)
            if (kept := await _kept_already(conn, stored)) is not None:
                return kept
            if snapshot is not None:
                await _save_job(conn, snapshot)
            await _insert_event(conn, stored)
        return stored

    async def claim(
        self, owner: str, *, lease_s: float, limit: int, job_id: str | None = None
    ) -> list[Lease]:
        rows = await self._fetch(
            "WITH picked AS ("
            " SELECT seq FROM analyzer_jobs"
            " WHERE state = ANY(%(states)s) AND (owner IS NULL OR lease_expires < now())"
            " AND (%(job)s::text IS NULL OR id = %(job)s)"
            " ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
            " UPDATE analyzer_jobs AS j SET owner = %(owner)s, lease_token = j.lease_token + 1,"
            " lease_expires = now() + make_interval(secs => %(lease_s)s)"
            " FROM picked WHERE j.seq = picked.seq"
            " RETURNING j.seq, j.data, j.lease_token, j.cancel_requested",
            {
                "states": [int(s) for s in UNFINISHED_STATES],
                "job": job_id,
                "limit": limit,
                "owner": owner,
                "lease_s": lease_s,
            },
        )
        return [
            Lease(pb.Job.FromString(data), owner, token, cancel)
            for _, data, token, cancel in sorted(rows, key=lambda row: int(row[0]))
        ]

    async def renew(self, lease: Lease, *, lease_s: float) -> Renewal:
        rows = await self._fetch(
            "UPDATE analyzer_jobs SET lease_expires = now() + make_interval(secs => %s)"
            " WHERE id = %s AND owner = %s AND lease_token = %s RETURNING cancel_requested",
            (lease_s, lease.job.id, lease.owner, lease.token),
        )
        if not rows:
            return Renewal.LOST
        return Renewal.CANCEL if rows[0][0] else Renewal.HELD

    async def release(self, owner: str) -> None:
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE analyzer_jobs SET owner = NULL, lease_expires = NULL"
                " WHERE owner = %s AND state = ANY(%s) RETURNING id",
                (owner, [int(s) for s in UNFINISHED_STATES]),
            )
            for (job_id,) in await cursor.fetchall():
                await notify(conn, JOBS_CHANNEL, f"queued:{job_id}")

    async def request_cancel(self, job_id: str) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE analyzer_jobs SET cancel_requested = true WHERE id = %s", (job_id,)
            )
            await notify(conn, JOBS_CHANNEL, f"cancel:{job_id}")

    async def queue_positions(self) -> dict[str, int]:
        rows = await self._fetch(_WAITING, ())
        return {job_id: position for position, (job_id, _) in enumerate(rows, start=1)}

    async def announce_queue(self, make: Callable[[int], Event]) -> list[Event]:
        announced = []
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_QUEUE_LOCK,))
            cursor = await conn.execute(_WAITING)
            for position, (job_id, last) in enumerate(await cursor.fetchall(), start=1):
                if position == last:
                    continue
                # Claimed meanwhile (the claim committed after the list was read): no news.
                cursor = await conn.execute(
                    "UPDATE analyzer_jobs SET announced = %s WHERE id = %s"
                    " AND (owner IS NULL OR lease_expires < now()) RETURNING id",
                    (position, job_id),
                )
                if await cursor.fetchone() is None:
                    continue
                stored = make(position)
                stored.job_id = job_id
                stored.time.GetCurrentTime()
                await _insert_event(conn, stored)
                announced.append(stored)
        return announced

    def watch(self, listener: Listener) -> None:
        self._watchers.watch(listener)

    async def list_events(self, job_id: str, after_sequence: int, limit: int) -> list[Event]:
        rows = await self._fetch(
            "SELECT data FROM analyzer_events WHERE job_id = %s AND sequence > %s"
            " ORDER BY sequence LIMIT %s",
            (job_id, after_sequence, limit),
        )
        return [Event.FromString(data) for (data,) in rows]

    async def list_jobs(
        self, *, page_size: int, page_token: str, state: pb.JobState.ValueType
    ) -> tuple[list[pb.Job], str]:
        before = decode_page_token(page_token) if page_token else None
        # NULL filters match everything; one more row than asked tells whether a page follows.
        rows = await self._fetch(
            "SELECT seq, data FROM analyzer_jobs"
            " WHERE (%(before)s::bigint IS NULL OR seq < %(before)s)"
            " AND (%(state)s::integer IS NULL OR state = %(state)s)"
            " ORDER BY seq DESC LIMIT %(limit)s",
            {
                "before": before,
                "state": None if state == pb.JOB_STATE_UNSPECIFIED else int(state),
                "limit": page_size + 1,
            },
        )
        jobs = [pb.Job.FromString(data) for _, data in rows[:page_size]]
        token = encode_page_token(rows[page_size - 1][0]) if len(rows) > page_size else ""
        return jobs, token

    async def unfinished_jobs(self) -> list[pb.Job]:
        rows = await self._fetch(
            "SELECT data FROM analyzer_jobs WHERE state = ANY(%s) ORDER BY seq",
            ([int(s) for s in UNFINISHED_STATES],),
        )
        return [pb.Job.FromString(data) for (data,) in rows]

    async def append_chat_turn(self, job_id: str, turn: ChatTurn) -> None:
        data = turn_to_json(turn)
        async with (
            self._in_order(("chat", job_id)),
            self._connection() as conn,
            conn.transaction(),
        ):
            cursor = await conn.execute(_NEXT_TURN, (job_id,))
            number = one(await cursor.fetchone())
            await conn.execute(
                "INSERT INTO analyzer_chat_turns (job_id, turn, data) VALUES (%s, %s, %s)",
                (job_id, number, data),
            )

    async def chat_turns(self, job_id: str, *, last: int | None = None) -> list[ChatTurn]:
        # LIMIT NULL is no limit.
        rows = await self._fetch(
            "SELECT data FROM analyzer_chat_turns WHERE job_id = %s ORDER BY turn DESC LIMIT %s",
            (job_id, last),
        )
        return [turn_from_json(data) for (data,) in reversed(rows)]

    async def close(self) -> None:
        await self._watchers.close()
        await self._pool.close()

    def _connection(self) -> AbstractAsyncContextManager[Connection]:
        return pooled(self._pool, self._url)

    async def _execute(self, query: str, params: tuple[Any, ...]) -> None:
        async with self._connection() as conn:
            await conn.execute(query, params)

    async def _fetch(
        self, query: str, params: tuple[Any, ...] | dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()


async def _fence(conn: Connection, job_id: str, lease: Lease | None) -> None:
    """Refuse the transaction's writes unless ``lease`` is the job's; the row stays locked."""
    if lease is None:
        return
    cursor = await conn.execute(
        "SELECT owner, lease_token FROM analyzer_jobs WHERE id = %s FOR UPDATE", (job_id,)
    )
    row = await cursor.fetchone()
    if row is None or (row[0], int(row[1])) != (lease.owner, lease.token):
        raise LeaseLost(job_id)


async def _kept_already(conn: Connection, event: Event) -> Event | None:
    """The job's last event when it is ``event`` (an append tried again after its connection
    broke during the commit, which did happen): kept once, not twice. Events carry their time,
    so two different ones never compare equal."""
    cursor = await conn.execute(
        "SELECT data FROM analyzer_events WHERE job_id = %s ORDER BY sequence DESC LIMIT 1",
        (event.job_id,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    last = Event.FromString(row[0])
    sequence = last.sequence
    last.sequence = event.sequence
    if last != event:
        return None
    last.sequence = sequence
    return last


async def _insert_event(conn: Connection, stored: Event) -> None:
    cursor = await conn.execute(_NEXT_EVENT, (stored.job_id,))
    stored.sequence = one(await cursor.fetchone())
    await conn.execute(
        "INSERT INTO analyzer_events (job_id, sequence, data) VALUES (%s, %s, %s)",
        (stored.job_id, stored.sequence, stored.SerializeToString()),
    )
    await notify(conn, EVENTS_CHANNEL, f"{stored.job_id}:{stored.sequence}")


async def _save_job(conn: Connection, job: pb.Job) -> None:
    cursor = await conn.execute(
        "UPDATE analyzer_jobs SET state = %s, data = %s WHERE id = %s",
        (job.state, job.SerializeToString(), job.id),
    )
    if cursor.rowcount != 1:
        raise KeyError(job.id)
