"""``JobStore`` in PostgreSQL, shared by every analyzer replica that names the same database.

psycopg 3 on a pool of connections. Each job's next event sequence (and chat turn) comes from its
row in ``analyzer_counters``, bumped by an upsert in the transaction that inserts the event: the
row stays locked until that transaction ends, so appends to one job from any number of replicas
take their numbers one after the other, and a rolled-back append gives its number back. Within one
store, appends to one job run one at a time in the order they were called, as SQLite's single
thread does, so a caller's events are numbered in the order it emitted them.

Tables carry the ``analyzer_`` prefix (the other services may share the database) and are made by
numbered migrations, applied once under an advisory lock when a store opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from analyzer_service.store import (
    UNFINISHED_STATES,
    ChatTurn,
    Event,
    StoreUnavailable,
    decode_page_token,
    encode_page_token,
    turn_from_json,
    turn_to_json,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.urls import masked, redact

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

# Taken (for the transaction) by whoever migrates, so that replicas starting together wait for
# one another instead of racing on CREATE TABLE. Any constant no other component uses.
_MIGRATION_LOCK = 0x5649_4749_4C41_4E41  # "VIGILANA"

# Append only: a database keeps the number of the last one applied.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE analyzer_videos (
        id text PRIMARY KEY,
        data bytea NOT NULL
    );
    CREATE TABLE analyzer_jobs (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        video_id text NOT NULL,
        state integer NOT NULL,
        data bytea NOT NULL
    );
    CREATE INDEX analyzer_jobs_by_state ON analyzer_jobs (state, seq);
    CREATE TABLE analyzer_events (
        job_id text NOT NULL,
        sequence bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (job_id, sequence)
    );
    CREATE TABLE analyzer_chat_turns (
        job_id text NOT NULL,
        turn integer NOT NULL,
        data text NOT NULL,
        PRIMARY KEY (job_id, turn)
    );
    CREATE TABLE analyzer_counters (
        job_id text PRIMARY KEY,
        last_event bigint NOT NULL DEFAULT 0,
        last_turn integer NOT NULL DEFAULT 0
    );
    """,
)

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


def where(url: str) -> str:
    """The host:port (or several) a libpq URL points at, for messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unreadable address"
    # No host: libpq's default Unix socket.
    hosts = str(params.get("host") or os.environ.get("PGHOST") or "local socket").split(",")
    ports = str(params.get("port") or os.environ.get("PGPORT") or "").split(",")
    # libpq: one port for all hosts, or one per host; an empty one is the default.
    ports = ports * len(hosts) if len(ports) == 1 else ports
    return ", ".join(f"{h}:{p or 5432}" for h, p in zip(hosts, ports, strict=False))


class PostgresJobStore:
    def __init__(self, pool: AsyncConnectionPool[Connection]) -> None:
        self._pool = pool
        self._in_order = _InOrder()

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
            raise StoreUnavailable(f"cannot connect to {place} ({_said(exc, url)})") from None
        try:
            async with conn:
                await _migrate(conn, place)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"{place} refused the job tables ({_said(exc, url)})") from None
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
        return cls(pool)

    async def create_video(self, video: pb.Video) -> None:
        await self._execute(
            "INSERT INTO analyzer_videos (id, data) VALUES (%s, %s)",
            (video.id, video.SerializeToString()),
        )

    async def get_video(self, video_id: str) -> pb.Video | None:
        rows = await self._fetch("SELECT data FROM analyzer_videos WHERE id = %s", (video_id,))
        return pb.Video.FromString(rows[0][0]) if rows else None

    async def create_job(self, job: pb.Job) -> None:
        await self._execute(
            "INSERT INTO analyzer_jobs (id, video_id, state, data) VALUES (%s, %s, %s, %s)",
            (job.id, job.video.id, job.state, job.SerializeToString()),
        )

    async def get_job(self, job_id: str) -> pb.Job | None:
        rows = await self._fetch("SELECT data FROM analyzer_jobs WHERE id = %s", (job_id,))
        return pb.Job.FromString(rows[0][0]) if rows else None

    async def update_job(self, job: pb.Job) -> None:
        snapshot = pb.Job()
        snapshot.CopyFrom(job)
        async with self._pool.connection() as conn:
            await _save_job(conn, snapshot)

    async def append_event(self, event: Event, *, job: pb.Job | None = None) -> Event:
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
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            cursor = await conn.execute(_NEXT_EVENT, (stored.job_id,))
            sequence = _one(await cursor.fetchone())
            stored.sequence = sequence
            await conn.execute(
                "INSERT INTO analyzer_events (job_id, sequence, data) VALUES (%s, %s, %s)",
                (stored.job_id, sequence, stored.SerializeToString()),
            )
            if snapshot is not None:
                await _save_job(conn, snapshot)
        return stored

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
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            cursor = await conn.execute(_NEXT_TURN, (job_id,))
            number = _one(await cursor.fetchone())
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
        await self._pool.close()

    async def _execute(self, query: str, params: tuple[Any, ...]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(query, params)

    async def _fetch(
        self, query: str, params: tuple[Any, ...] | dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()


async def _save_job(conn: Connection, job: pb.Job) -> None:
    cursor = await conn.execute(
        "UPDATE analyzer_jobs SET state = %s, data = %s WHERE id = %s",
        (job.state, job.SerializeToString(), job.id),
    )
    if cursor.rowcount != 1:
        raise KeyError(job.id)


async def _migrate(conn: Connection, place: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS analyzer_schema ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM analyzer_schema")
        current = _one(await cursor.fetchone())
        if current > len(_MIGRATIONS):
            raise StoreUnavailable(
                f"{place} has job tables of version {current}, newer than this analyzer's"
                f" {len(_MIGRATIONS)}: upgrade the analyzer"
            )
        for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO analyzer_schema (version) VALUES (%s)", (version,))
            log.info("job tables migrated to version %d", version)


def _one(row: tuple[Any, ...] | None) -> int:
    if row is None:
        raise RuntimeError("the query returned no row")
    return int(row[0])


def _said(exc: BaseException, url: str) -> str:
    """What the database or libpq said, on one line and without the URL's passwords."""
    return " ".join(redact(str(exc), url).split()) or type(exc).__name__


@dataclasses.dataclass
class _Turns:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0


class _InOrder:
    """Calls on one key run one at a time, in the order they were made (asyncio.Lock is FIFO);
    keys nobody uses are forgotten."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], _Turns] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, key: tuple[str, str]) -> AsyncIterator[None]:
        turns = self._keys.setdefault(key, _Turns())
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if turns.users == 0:
                del self._keys[key]
