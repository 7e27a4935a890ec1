"""The source-store contract, and the store the settings name: PostgreSQL for a
``postgresql://`` URL (shared by replicas, with leases: ``detector_service/ownership.py``), else
the embedded SQLite file."""

from __future__ import annotations

from typing import Protocol

from detector_service.postgres_sources import PostgresSourceStore, SourceStoreUnavailable
from detector_service.settings import DetectorSettings
from detector_service.source_store import SourceStore
from vigil.core.urls import masked
from vigil.detector.v1 import detector_service_pb2 as pb

SCHEMES = ("postgresql://", "postgres://")


class SourceKeeping(Protocol):
    """What the registry keeps sources in. The blocking calls are for start and stop (off the
    loop); writes run in the order they were asked for."""

    def load(self) -> list[pb.SourceSpec]: ...
    async def add(self, spec: pb.SourceSpec) -> None: ...
    async def put(self, spec: pb.SourceSpec) -> None: ...
    async def delete(self, source_id: str) -> bool: ...
    def load_overrides(self) -> list[tuple[pb.SourceSpec, pb.SourceSpec]]: ...
    async def put_override(self, base: pb.SourceSpec, spec: pb.SourceSpec) -> None: ...
    async def delete_override(self, source_id: str) -> None: ...
    def close(self) -> None: ...


def open_source_store(settings: DetectorSettings) -> SourceStore | PostgresSourceStore:
    """Open the configured store (blocking: call off the loop); ``SourceStoreUnavailable`` when
    it cannot be used."""
    url = settings.database_url.get_secret_value()
    if not url:
        return SourceStore(settings.data_dir / "sources.sqlite3")
    if not url.startswith(SCHEMES):
        raise SourceStoreUnavailable(
            f"VIGIL_DETECTOR_DATABASE_URL must start with postgresql://, not {masked(url)!r}"
        )
    return PostgresSourceStore(
        url,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
