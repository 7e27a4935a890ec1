"""The incident tables in PostgreSQL, made and brought up to date when a store opens: numbered
migrations of their own (``detector_incidents_schema``, ``postgres_migrations.py``). Tables carry
the ``detector_`` prefix: other services may share the database.
"""

from __future__ import annotations

from detector_service.postgres_migrations import Connection
from detector_service.postgres_migrations import migrate as migrate_group

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
    # Announcements keyed by their writer: one retried after a lost answer is not doubled.
    """
    ALTER TABLE detector_incident_events ADD COLUMN key text;
    CREATE UNIQUE INDEX detector_incident_events_by_key ON detector_incident_events (key);
    """,
)


def migrate(conn: Connection, place: str) -> None:
    """Bring the incident tables up to date (``conn`` in autocommit mode)."""
    migrate_group(conn, place, group="incidents", lock=_MIGRATION_LOCK, migrations=MIGRATIONS)
