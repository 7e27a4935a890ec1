"""The job store the settings name: PostgreSQL for a ``postgresql://`` URL, else SQLite."""

from __future__ import annotations

from analyzer_service.postgres_store import PostgresJobStore
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.sqlite_store import SQLiteJobStore
from analyzer_service.store import JobStore, StoreUnavailable
from vigil.core.urls import masked

SCHEMES = ("postgresql://", "postgres://")


async def open_store(settings: AnalyzerSettings) -> JobStore:
    """Open the configured store; ``StoreUnavailable`` when it cannot be used."""
    url = settings.database_url.get_secret_value()
    if not url:
        return await SQLiteJobStore.open(settings.database)
    if not url.startswith(SCHEMES):
        raise StoreUnavailable(
            f"VIGIL_ANALYZER_DATABASE_URL must start with postgresql://, not {masked(url)!r}"
        )
    return await PostgresJobStore.open(
        url,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
