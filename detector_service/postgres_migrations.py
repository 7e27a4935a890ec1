"""Numbered migrations of a group of the detector's PostgreSQL tables, applied when a store opens.

Each group (the incidents, the event log) keeps the number of its last migration applied in a
table of its own, so the groups grow apart; a group migrates under an advisory lock, so replicas
starting together do not race on CREATE TABLE.
"""

from __future__ import annotations

from typing import Any

import psycopg

Connection = psycopg.Connection[tuple[Any, ...]]


class SchemaTooNew(Exception):
    pass


def migrate(
    conn: Connection,
    place: str,
    *,
    group: str,
    lock: int,
    migrations: tuple[str, ...],
    table: str | None = None,
) -> None:
    """Apply the migrations ``conn``'s database lacks (``conn`` in autocommit mode); the tables
    of ``group`` keep their version in ``table`` (by default ``detector_<group>_schema``; the
    first groups' tables predate that name). Raises ``SchemaTooNew`` for tables a newer detector
    made."""
    table = table or f"detector_{group}_schema"
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {table}").fetchone()
        current = int(row[0]) if row is not None else 0
        if current > len(migrations):
            raise SchemaTooNew(
                f"{place} has {group} tables of version {current}, newer than this detector's"
                f" {len(migrations)}: upgrade the detector"
            )
        for version, script in enumerate(migrations[current:], start=current + 1):
            conn.execute(script)
            conn.execute(f"INSERT INTO {table} (version) VALUES (%s)", (version,))
