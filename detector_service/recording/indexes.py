"""The recordings index the settings name: PostgreSQL for a ``postgresql://`` database URL (the
one the replicas keep their sources in, shared by them all), else the embedded SQLite file."""

from __future__ import annotations

import logging
import pathlib

from detector_service.postgres_pool import postgres_url
from detector_service.recording.contract import RecordingIndex
from detector_service.recording.index import SegmentIndex
from detector_service.recording.postgres_index import (
    PostgresSegmentIndex,
    RecordingIndexUnavailable,
)
from detector_service.settings import DetectorSettings

log = logging.getLogger(__name__)


def open_index(settings: DetectorSettings, root: pathlib.Path) -> RecordingIndex:
    """The index the settings name (blocking): PostgreSQL when the sources are kept there (the
    replicas share it, and ``root`` must be a directory they all see), else SQLite in ``root``."""
    url = postgres_url(settings.database_url.get_secret_value(), RecordingIndexUnavailable)
    if not url:
        return SegmentIndex(root / "index.sqlite3")
    if settings.recording_dir is None:
        log.warning(
            "recordings are indexed in PostgreSQL but written under this replica's data_dir:"
            " set VIGIL_DETECTOR_RECORDING_DIR to a directory every replica sees, or the others"
            " cannot read them"
        )
    return PostgresSegmentIndex(
        url,
        root,
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_connect_timeout_s,
    )
