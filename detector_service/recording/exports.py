"""Exported ranges, kept for a short while: a ``<video>`` element reads an export through many
range requests (the index first, then wherever the user seeks), each one an ExportRecording call
with its own offset; joining the same range again for each would cost a remux per request.

An export is keyed by source and range (to the microsecond) and deleted ``ttl_s`` after its last
use. Requests for a range being exported wait for that one export. A file being read when it is
deleted stays readable through the open handle (POSIX), so expiry never breaks a reader.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import time
import uuid
from dataclasses import dataclass

from detector_service.private import private_dir
from detector_service.recording.contract import RecordingIndex
from detector_service.recording.export import Export, export_range

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    export: Export
    size: int


@dataclass
class _Entry:
    task: asyncio.Future[Exported]
    used: float


class ExportCache:
    """Lives on the event loop; the exports themselves run on threads."""

    def __init__(self, index: RecordingIndex, folder: pathlib.Path, ttl_s: float) -> None:
        self.index = index
        self.folder = folder
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, int, int], _Entry] = {}
        #: Exports made (not served from the cache), for the curious and the tests.
        self.made = 0

    @staticmethod
    def prepare(folder: pathlib.Path) -> pathlib.Path:
        """An empty private folder (exports of an earlier run are stale). Blocking."""
        shutil.rmtree(folder, ignore_errors=True)
        return private_dir(folder)

    async def get(self, source: str, start: float, end: float) -> Exported:
        """The export of [start, end) of ``source``; raises ``NotRecorded``."""
        self._expire()
        key = (source, round(start * 1e6), round(end * 1e6))
        entry = self._entries.get(key)
        if entry is None:
            path = self.folder / f"{uuid.uuid4().hex}.mp4"
            task = asyncio.ensure_future(asyncio.to_thread(self._export, source, start, end, path))
            entry = self._entries[key] = _Entry(task, time.monotonic())
            self.made += 1
        entry.used = time.monotonic()
        try:
            # Shielded: one caller giving up must not cancel the export others wait for.
            return await asyncio.shield(entry.task)
        except Exception:
            if self._entries.get(key) is entry:
                del self._entries[key]  # a failure is not kept: the next request tries again
            raise

    def _export(self, source: str, start: float, end: float, path: pathlib.Path) -> Exported:
        export = export_range(self.index, source, start, end, path)
        return Exported(export, path.stat().st_size)

    def _expire(self) -> None:
        now = time.monotonic()
        for key, entry in list(self._entries.items()):
            if entry.task.done() and now - entry.used > self.ttl_s:
                del self._entries[key]
                if entry.task.exception() is None:
                    path = entry.task.result().export.path
                    asyncio.get_running_loop().run_in_executor(None, _unlink, path)

    def close(self) -> None:
        """Delete every export (blocking: call from a thread)."""
        self._entries.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _unlink(path: pathlib.Path) -> None:
    path.unlink(missing_ok=True)
