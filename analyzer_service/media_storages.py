"""The media storage the settings name, found by the scheme of ``VIGIL_ANALYZER_STORAGE_URL``.

Empty: the data directory. ``file:///path``: a directory, typically a volume every replica
mounts. A backend more (an object store) is one entry in ``BUILDERS``; a scheme without one is
refused at the start, saying so, rather than found out at the first upload.
"""

from __future__ import annotations

import pathlib
import urllib.parse
from collections.abc import Callable

from analyzer_service.media_storage import MediaStorage, StorageUnavailable
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.shared_directory import SharedDirectory
from vigil.core.urls import masked

# Object stores the design leaves room for; named in the refusal so that it says what is meant.
OBJECT_STORES = ("s3", "gs", "gcs", "az", "azure", "minio")


def _directory(url: urllib.parse.SplitResult, settings: AnalyzerSettings) -> MediaStorage:
    if url.netloc not in ("", "localhost"):
        raise StorageUnavailable(
            f"file:// storage must be a local path (file:///path), not on host {url.netloc!r}"
        )
    path = pathlib.Path(urllib.parse.unquote(url.path))
    if not path.is_absolute():
        raise StorageUnavailable(f"file:// storage needs an absolute path, not {url.path!r}")
    return SharedDirectory(path, replica=settings.replica)


BUILDERS: dict[str, Callable[[urllib.parse.SplitResult, AnalyzerSettings], MediaStorage]] = {
    "file": _directory,
}


def open_media_storage(settings: AnalyzerSettings) -> MediaStorage:
    """The configured storage, ready to use; StorageUnavailable when it cannot be used."""
    if not settings.storage_url:
        # As before the setting existed: an unusable data directory fails the start as it is.
        return SharedDirectory(settings.data_dir, replica=settings.replica)
    url = urllib.parse.urlsplit(settings.storage_url)
    builder = BUILDERS.get(url.scheme.lower())
    if builder is None:
        shown = masked(settings.storage_url)
        if url.scheme.lower() in OBJECT_STORES:
            raise StorageUnavailable(
                f"object storage is not built yet: VIGIL_ANALYZER_STORAGE_URL={shown!r} names "
                f"one; use a directory every replica mounts (file:///path) instead"
            )
        raise StorageUnavailable(
            f"VIGIL_ANALYZER_STORAGE_URL must be empty (the data directory) or file:///path, "
            f"not {shown!r}"
        )
    try:
        return builder(url, settings)
    except OSError as exc:
        raise StorageUnavailable(f"media storage {masked(settings.storage_url)!r}: {exc}") from exc
