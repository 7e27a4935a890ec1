"""The event-log store the settings name: PostgreSQL for a ``postgresql://`` URL (shared by the
replicas, like the sources and incidents), else the embedded SQLite file in the data directory."""

from __future__ import annotations

from detector_service.event_store import EventKeeping, SQLiteEvents
from detector_service.postgres_events import EventStoreUnavailable, PostgresEvents
from detector_service.postgres_pool import postgres_url
from detector_service.settings import DetectorSettings


def open_event_store(settings: DetectorSettings) -> EventKeeping:
    """Open the configured store (blocking: call off the loop); ``EventStoreUnavailable`` when
    it cannot be used."""
    url = postgres_url(settings.database_url.get_secret_value(), EventStoreUnavailable)
    retention_s = settings.event_retention_days * 86400
    if not url:
        return SQLiteEvents(settings.data_dir / "events.sqlite3", retention_s)
    return PostgresEvents(
        url,
        replica=settings.replica,
        retention_s=retention_s,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
