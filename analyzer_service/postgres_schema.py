"""The job tables in PostgreSQL: numbered migrations, applied once under an advisory lock when a
store opens, so that replicas starting together wait for one another instead of racing on
CREATE TABLE. A database keeps the number of the last migration applied (``analyzer_schema``)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from analyzer_service.store import StoreUnavailable

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
    """
    ALTER TABLE analyzer_jobs
        ADD COLUMN owner text,
        ADD COLUMN lease_token bigint NOT NULL DEFAULT 0,
        ADD COLUMN lease_expires timestamptz,
        ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
        ADD COLUMN announced integer NOT NULL DEFAULT 0;
    """,
)


async def migrate(conn: Connection, place: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS analyzer_schema ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM analyzer_schema")
        current = one(await cursor.fetchone())
        if current > len(_MIGRATIONS):
            raise StoreUnavailable(
                f"{place} has job tables of version {current}, newer than this analyzer's"
                f" {len(_MIGRATIONS)}: upgrade the analyzer"
            )
        for version, script in enumerate(_MIGRATIONS[current:], start=current + 1):
            await conn.execute(script)
            await conn.execute("INSERT INTO analyzer_schema (version) VALUES (%s)", (version,))
            log.info("job tables migrated to version %d", version)


def one(row: tuple[Any, ...] | None) -> int:
    if row is None:
        raise RuntimeError("the query returned no row")
    return int(row[0])
