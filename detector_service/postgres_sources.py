"""The detector's registered sources in PostgreSQL, shared by every replica naming the database,
with the leases that give each source exactly one owner (``detector_service/ownership.py``).

Same contract as the SQLite ``SourceStore``: blocking ``load``/``load_overrides``/``close`` (for
start and stop, off the loop) and awaitable writes that run in the order they were asked for, on
one dedicated thread over a psycopg 3 pool. The lease calls go through that thread too, so a
source's lease row is never claimed before the write that made it.

Leases: one row per source (``detector_leases``: owner replica id, fencing token, expiry from the
database's clock), and one row per live replica (``detector_replicas``: its address, expiring like
a lease) so that a replica that does not own a source can name the owner's address. Claims take
rows with ``FOR UPDATE SKIP LOCKED`` and bump the token: a renewal names the token it holds, so a
replica that stalled past its lease and lost the source to another finds out at its next renewal,
even when the new owner has the same id (a restart). Tables carry the ``detector_`` prefix (other
services may share the database) and are made by numbered migrations under an advisory lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from detector_service.postgres_migrations import Connection, migrate
from detector_service.postgres_pool import open_pool, said
from vigil.core.errors import AlreadyExists, Unavailable
from vigil.core.urls import masked
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a lost connection looks like: a database restarting, failing over or out of reach (the
# pool's PoolTimeout too). Calls then fail UNAVAILABLE (retryable); the pool reconnects.
_GONE = (psycopg.OperationalError, psycopg.InterfaceError)

# Taken by whoever migrates, so replicas starting together do not race on CREATE TABLE.
_MIGRATION_LOCK = 0x5649_4749_4C44_4554  # "VIGILDET"
# Append only: a database keeps the number of the last one applied (detector_schema).
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE detector_sources (
        id text PRIMARY KEY,
        added_ns bigint NOT NULL,
        spec bytea NOT NULL
    );
    CREATE TABLE detector_overrides (
        id text PRIMARY KEY,
        base bytea NOT NULL,
        spec bytea NOT NULL
    );
    CREATE TABLE detector_replicas (
        id text PRIMARY KEY,
        address text NOT NULL,
        expires timestamptz NOT NULL
    );
    CREATE TABLE detector_leases (
        source_id text PRIMARY KEY,
        owner text,
        token bigint NOT NULL DEFAULT 0,
        expires timestamptz
    );
    """,
)

_CLAIM = """
    WITH picked AS (
        SELECT source_id FROM detector_leases
        WHERE (owner IS NULL OR expires < now()
            OR (owner = %(me)s AND NOT source_id = ANY(%(held)s)))
        AND (source_id = ANY(%(known)s) OR source_id IN (SELECT id FROM detector_sources))
        ORDER BY source_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    UPDATE detector_leases AS l SET owner = %(me)s, token = l.token + 1,
        expires = now() + make_interval(secs => %(lease_s)s)
    FROM picked WHERE l.source_id = picked.source_id
    RETURNING l.source_id, l.token
"""
_RENEW = """
    UPDATE detector_leases AS l SET expires = now() + make_interval(secs => %(lease_s)s)
    FROM unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS held(source_id, token)
    WHERE l.source_id = held.source_id AND l.token = held.token AND l.owner = %(me)s
    RETURNING l.source_id
"""


class SourceStoreUnavailable(Exception):
    """The database cannot be used; the message names host and port, never a password."""


@dataclass(frozen=True)
class Owner:
    replica: str
    address: str


class PostgresSourceStore:
    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout_s: float = 10.0) -> None:
        """Connect, bring the tables up to date and fill the pool (blocking: call off the loop).

        Raises ``SourceStoreUnavailable`` when the database cannot be reached or refuses the tables.
        """
        self._url = url
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sources")
        self._pool = open_pool(
            url,
            name="detector-sources",
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            setup=_migrate,
            unavailable=SourceStoreUnavailable,
        )
        log.info("sources kept in %s", masked(url))

    def _said(self, exc: BaseException) -> str:
        return said(exc, self._url)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except _GONE as exc:
            raise Unavailable(
                f"the source database (PostgreSQL at {masked(self._url)}) is out of reach"
                f" ({self._said(exc)}); try again"
            ) from None

    def _fetch(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def load(self) -> list[pb.SourceSpec]:
        """Every kept source, in the order they were added (blocking: call off the loop)."""
        rows = self._executor.submit(
            self._guarded, self._fetch, "SELECT spec FROM detector_sources ORDER BY added_ns, id"
        ).result()
        return [pb.SourceSpec.FromString(row[0]) for row in rows]

    async def get(self, source_id: str) -> pb.SourceSpec | None:
        rows = await self._run(
            self._fetch, "SELECT spec FROM detector_sources WHERE id = %s", (source_id,)
        )
        return pb.SourceSpec.FromString(rows[0][0]) if rows else None

    async def put(self, spec: pb.SourceSpec) -> None:
        """Keep ``spec`` (real URIs included), replacing a kept source of the same id."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO detector_sources (id, added_ns, spec) VALUES (%s, %s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET added_ns = excluded.added_ns,"
                    " spec = excluded.spec",
                    row,
                )
                conn.execute(
                    "INSERT INTO detector_leases (source_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (spec.id,),
                )

        await self._run(go)

    async def add(self, spec: pb.SourceSpec) -> None:
        """Keep a new source; ``AlreadyExists`` when one of its id is kept already (by any
        replica: of two adding the same id at once, exactly one succeeds)."""
        row = (spec.id, time.time_ns(), spec.SerializeToString())

        def go() -> None:
            with self._pool.connection() as conn, conn.transaction():
                added = conn.execute(
                    "INSERT INTO detector_sources (id, added_ns, spec) VALUES (%s, %s, %s)"
                    " ON CONFLICT (id) DO NOTHING",
                    row,
                ).rowcount
                if not added:
                    raise AlreadyExists(f"source {spec.id!r} already exists")
                conn.execute(
                    "INSERT INTO detector_leases (source_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (spec.id,),
                )

        await self._run(go)

    async def delete(self, source_id: str) -> bool:
        """Forget a kept source, or a configured one's update; False when there was neither."""

        def go() -> bool:
            with self._pool.connection() as conn, conn.transaction():
                found = conn.execute(
                    "DELETE FROM detector_sources WHERE id = %s", (source_id,)
                ).rowcount
                found += conn.execute(
                    "DELETE FROM detector_overrides WHERE id = %s", (source_id,)
                ).rowcount
                conn.execute("DELETE FROM detector_leases WHERE source_id = %s", (source_id,))
                return found > 0

        return await self._run(go)

    def load_overrides(self) -> list[tuple[pb.SourceSpec, pb.SourceSpec]]:
        """The updates of configured sources, each with the configuration it was made on
        (blocking: call off the loop)."""
        rows = self._executor.submit(
            self._guarded, self._fetch, "SELECT base, spec FROM detector_overrides ORDER BY id"
        ).result()
        return [(pb.SourceSpec.FromString(b), pb.SourceSpec.FromString(s)) for b, s in rows]

    async def put_override(self, base: pb.SourceSpec, spec: pb.SourceSpec) -> None:
        row = (spec.id, base.SerializeToString(deterministic=True), spec.SerializeToString())
        await self._run(
            self._fetch,
            "INSERT INTO detector_overrides (id, base, spec) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET base = excluded.base, spec = excluded.spec",
            row,
        )

    async def delete_override(self, source_id: str) -> None:
        await self._run(self._fetch, "DELETE FROM detector_overrides WHERE id = %s", (source_id,))

    # Leases (detector_service/ownership.py).

    async def heartbeat(self, replica: str, address: str, lease_s: float) -> tuple[int, int]:
        """Say this replica is alive at ``address`` for ``lease_s``; return how many sources
        there are and how many replicas are alive, for a fair share."""

        def go() -> tuple[int, int]:
            with self._pool.connection() as conn:
                conn.execute(
                    "INSERT INTO detector_replicas (id, address, expires)"
                    " VALUES (%s, %s, now() + make_interval(secs => %s))"
                    " ON CONFLICT (id) DO UPDATE SET address = excluded.address,"
                    " expires = excluded.expires",
                    (replica, address, lease_s),
                )
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM detector_leases),"
                    " (SELECT count(*) FROM detector_replicas WHERE expires > now())"
                ).fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

        return await self._run(go)

    async def add_leases(self, source_ids: list[str]) -> None:
        """Lease rows for sources that are not kept here (the configured ones)."""
        await self._run(
            self._fetch,
            "INSERT INTO detector_leases (source_id) SELECT unnest(%s::text[])"
            " ON CONFLICT DO NOTHING",
            (source_ids,),
        )

    async def claim(
        self, replica: str, *, held: list[str], known: list[str], limit: int, lease_s: float
    ) -> dict[str, int]:
        """Take up to ``limit`` sources nobody holds (kept ones, or ``known`` configured ones);
        their new fencing tokens by id."""
        params = {
            "me": replica, "held": held, "known": known, "limit": limit, "lease_s": lease_s,
        }  # fmt: skip
        rows = await self._run(self._fetch, _CLAIM, params)
        return {str(source_id): int(token) for source_id, token in rows}

    async def renew(self, replica: str, held: dict[str, int], *, lease_s: float) -> set[str]:
        """Extend the leases still held under their tokens; the ids of those."""
        ids = list(held)
        params = {"me": replica, "ids": ids, "tokens": [held[i] for i in ids], "lease_s": lease_s}
        rows = await self._run(self._fetch, _RENEW, params)
        return {str(row[0]) for row in rows}

    async def adopt(self, replica: str, source_ids: list[str], lease_s: float) -> dict[str, int]:
        """Claim sources this replica registered itself (just added): nobody else's."""
        rows = await self._run(
            self._fetch,
            "UPDATE detector_leases SET owner = %s, token = token + 1,"
            " expires = now() + make_interval(secs => %s)"
            " WHERE source_id = ANY(%s) AND (owner IS NULL OR expires < now())"
            " RETURNING source_id, token",
            (replica, lease_s, source_ids),
        )
        return {str(source_id): int(token) for source_id, token in rows}

    async def release(self, replica: str, source_ids: list[str]) -> None:
        await self._run(
            self._fetch,
            "UPDATE detector_leases SET owner = NULL, expires = NULL"
            " WHERE owner = %s AND source_id = ANY(%s)",
            (replica, source_ids),
        )

    async def owners(self) -> dict[str, Owner | None]:
        """Every source with a lease row, and its live owner (None: nobody right now)."""
        rows = await self._run(
            self._fetch,
            "SELECT l.source_id, l.owner, r.address FROM detector_leases AS l"
            " LEFT JOIN detector_replicas AS r ON r.id = l.owner"
            " AND l.expires > now() AND r.expires > now()",
        )
        return {
            str(source_id): Owner(str(owner), str(address)) if address is not None else None
            for source_id, owner, address in rows
        }

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # Submitted now, in the caller's order; awaited without blocking the loop.
        return await asyncio.wrap_future(self._executor.submit(self._guarded, fn, *args))

    def close(self) -> None:
        """Finish queued writes and close (blocking: call off the loop)."""
        self._executor.shutdown(wait=True)
        self._pool.close()


def _migrate(conn: Connection, place: str) -> None:
    # The first group of tables: its version table predates the per-group names.
    migrate(
        conn,
        place,
        group="detector",
        lock=_MIGRATION_LOCK,
        migrations=_MIGRATIONS,
        table="detector_schema",
    )
