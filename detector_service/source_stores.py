"""The source-store contract, and the store the settings name: PostgreSQL for a
``postgresql://`` URL (shared by replicas, with leases: ``detector_service/ownership.py``), else
the embedded SQLite file."""

from __future__ import annotations

from typing import Protocol

from detector_service.postgres_pool import postgres_url
from detector_service.postgres_sources import PostgresSourceStore, SourceStoreUnavailable
from detector_service.settings import DetectorSettings
from detector_service.source_store import SourceStore
from vigil.detector.v1 import detector_service_pb2 as pb


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
    url = postgres_url(settings.database_url.get_secret_value(), SourceStoreUnavailable)
    if not url:
        return SourceStore(settings.data_dir / "sources.sqlite3")
    return PostgresSourceStore(
        url,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
