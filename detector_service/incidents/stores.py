"""The incident store the settings name: PostgreSQL for a ``postgresql://`` URL (shared by the
replicas, like the sources: ``detector_service/source_stores.py``), else the embedded SQLite file
in the data directory."""

from __future__ import annotations

from detector_service.incidents.keeping import IncidentKeeping
from detector_service.incidents.postgres_store import (
    IncidentStoreUnavailable,
    PostgresIncidentStore,
)
from detector_service.incidents.store import IncidentStore
from detector_service.postgres_pool import postgres_url
from detector_service.settings import DetectorSettings


def open_incident_store(settings: DetectorSettings) -> IncidentKeeping:
    """Open the configured store (blocking: call off the loop); ``IncidentStoreUnavailable``
    when it cannot be used."""
    url = postgres_url(settings.database_url.get_secret_value(), IncidentStoreUnavailable)
    if not url:
        return IncidentStore(settings.data_dir / "incidents.sqlite3")
    return PostgresIncidentStore(
        url,
        replica=settings.replica,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
