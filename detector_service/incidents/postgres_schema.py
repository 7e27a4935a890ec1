"""The incident tables in PostgreSQL, made and brought up to date when a store opens.

Numbered migrations of their own (``detector_incidents_schema``), so that the sources' tables and
these grow apart; applied once under an advisory lock, so replicas starting together do not race
on CREATE TABLE. Tables carry the ``detector_`` prefix: other services may share the database.
"""

from __future__ import annotations

from typing import Any

import psycopg

Connection = psycopg.Connection[tuple[Any, ...]]

# Taken by whoever migrates the incident tables.
_MIGRATION_LOCK = 0x5649_4749_4C49_4E43  # "VIGILINC"
# Append only: a database keeps the number of the last one applied.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE detector_incidents (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        -- The replica that saved it last: the one that retries its verification.
        replica text NOT NULL,
        source_id text NOT NULL,
        class_name text NOT NULL,
        rule_id text NOT NULL,
        opened_ns bigint NOT NULL,
        closed_ns bigint,
        rejected integer NOT NULL,
        decision integer NOT NULL DEFAULT 0,
        review bytea,
        data bytea NOT NULL,
        snapshot bytea NOT NULL
    );
    CREATE INDEX detector_incidents_by_time ON detector_incidents (opened_ns, seq);
    CREATE INDEX detector_incidents_by_source ON detector_incidents (source_id, opened_ns, seq);
    CREATE INDEX detector_incidents_by_replica ON detector_incidents (replica, opened_ns, seq);
    CREATE INDEX detector_incidents_stats ON detector_incidents
        (source_id, class_name, rule_id, opened_ns) INCLUDE (decision, rejected);
    -- Events streamed by one replica, for the streams of the others (LISTEN/NOTIFY says a new
    -- one is here). Numbered by the one counter row, taken in the inserting transaction, so
    -- numbers commit in order and a reader that saw n has seen everything before n.
    CREATE TABLE detector_incident_events (
        seq bigint PRIMARY KEY,
        replica text NOT NULL,
        incident_id text NOT NULL,
        data bytea NOT NULL
    );
    CREATE TABLE detector_incident_counter (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        last bigint NOT NULL
    );
    INSERT INTO detector_incident_counter (last) VALUES (0);
    """,
)


class SchemaTooNew(Exception):
    pass


def migrate(conn: Connection, place: str) -> None:
    """Bring the incident tables up to date (``conn`` in autocommit mode)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS detector_incidents_schema ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM detector_incidents_schema"
        ).fetchone()
        current = int(row[0]) if row is not None else 0
        if current > len(MIGRATIONS):
            raise SchemaTooNew(
                f"{place} has incident tables of version {current}, newer than this detector's"
                f" {len(MIGRATIONS)}: upgrade the detector"
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(script)
            conn.execute("INSERT INTO detector_incidents_schema (version) VALUES (%s)", (version,))
