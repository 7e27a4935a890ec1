"""Incident clips: a few seconds around the opening of an incident, written as MJPEG AVI.

Each source keeps a ring of its recent annotated JPEGs (only references to bytes the pipeline
already made). When an incident opens, the ring's last ``pre_s`` seconds start a clip, the next
``post_s`` seconds of frames are appended as they arrive, and the finished clip is decoded and
written on one background thread, so the processing thread never decodes or touches the disk.

The clip covers the opening, not the whole incident: its length stays bounded however long the
incident lasts, and the frames worth seeing are those that made it open.

Not thread-safe on its own: the tracker calls ``frame``, ``start`` and ``finish`` under its lock.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import pathlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from detector_service.private import private_dir

log = logging.getLogger(__name__)

# A clip's frame rate when it has too few frames to measure one.
DEFAULT_FPS = 10.0
# Guards the ring against a source with a bogus clock or an absurd frame rate.
MAX_RING_FRAMES = 2000

OnDone = Callable[[str, str, str], None]
"""Called on the writer thread as ``on_done(source_id, incident_id, clip_path)``."""


@dataclass(slots=True)
class _Clip:
    incident_id: str
    end_ns: int
    frames: list[tuple[int, bytes]] = field(default_factory=list)


class ClipRecorder:
    def __init__(
        self,
        clip_dir: pathlib.Path,
        pre_s: float,
        post_s: float,
        on_done: OnDone,
        max_pending: int = 8,
    ) -> None:
        self.clip_dir = clip_dir
        self.pre_ns = int(pre_s * 1e9)
        self.post_ns = int(post_s * 1e9)
        self.on_done = on_done
        self.max_pending = max_pending
        self._rings: dict[str, collections.deque[tuple[int, bytes]]] = {}
        self._open: dict[str, list[_Clip]] = {}
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clips")
        # Guards the counters, which the writer thread updates too.
        self._counts = threading.Lock()
        self._pending = 0
        #: Clips given up because too many were waiting to be written, or writing failed.
        self.dropped = 0
        self.written = 0

    def start(self, source_id: str, incident_id: str, open_ns: int) -> None:
        """Begin a clip with the frames seen before ``open_ns`` (call before ``frame``)."""
        ring = self._rings.get(source_id, ())
        pre = [(t, jpeg) for t, jpeg in ring if open_ns - self.pre_ns <= t < open_ns]
        clip = _Clip(incident_id, open_ns + self.post_ns, pre)
        self._open.setdefault(source_id, []).append(clip)

    def frame(self, source_id: str, time_ns: int, jpeg: bytes) -> None:
        """Feed one frame: into the source's ring and every clip of the source still recording."""
        clips = self._open.get(source_id)
        if clips:
            still: list[_Clip] = []
            for clip in clips:
                if time_ns < clip.end_ns:
                    clip.frames.append((time_ns, jpeg))
                    still.append(clip)
                else:
                    self._submit(source_id, clip)
            self._open[source_id] = still
        ring = self._rings.setdefault(source_id, collections.deque(maxlen=MAX_RING_FRAMES))
        ring.append((time_ns, jpeg))
        while ring and ring[0][0] < time_ns - self.pre_ns:
            ring.popleft()

    def finish(self, source_id: str) -> None:
        """The source stopped: write its clips with what they have and forget its ring."""
        for clip in self._open.pop(source_id, []):
            self._submit(source_id, clip)
        self._rings.pop(source_id, None)

    def close(self) -> None:
        """Write every clip still recording and wait for the writer (blocks)."""
        for source_id in list(self._open):
            self.finish(source_id)
        self._writer.shutdown(wait=True)

    def _submit(self, source_id: str, clip: _Clip) -> None:
        if not clip.frames:
            return
        with self._counts:
            full = self._pending >= self.max_pending
            if full:
                self.dropped += 1
            else:
                self._pending += 1
        if full:
            # The first drop and then every hundredth: a disk that cannot keep up must not also
            # flood the log.
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "clip of incident %s dropped: %d clips lost", clip.incident_id, self.dropped
                )
            return
        path = self.clip_dir / f"{clip.incident_id}.avi"
        self._writer.submit(self._write, source_id, clip, path)

    def _write(self, source_id: str, clip: _Clip, path: pathlib.Path) -> None:
        # Runs on the writer thread. ``on_done`` is called from here rather than from a future's
        # done-callback, which could run on the submitting thread while it holds the tracker lock.
        try:
            write_clip(path, clip.frames)
        except Exception:
            log.exception("clip for incident %s failed", clip.incident_id)
            with self._counts:
                self._pending -= 1
                self.dropped += 1
            return
        with self._counts:
            self._pending -= 1
            self.written += 1
        try:
            self.on_done(source_id, clip.incident_id, str(path))
        except Exception:
            log.exception("clip callback for incident %s failed", clip.incident_id)


def write_clip(path: pathlib.Path, frames: list[tuple[int, bytes]]) -> None:
    """Decode ``frames`` and write them as an MJPEG AVI at their measured frame rate."""
    fps = DEFAULT_FPS
    if len(frames) >= 2 and frames[-1][0] > frames[0][0]:
        fps = (len(frames) - 1) * 1e9 / (frames[-1][0] - frames[0][0])
    fps = min(max(fps, 1.0), 120.0)
    private_dir(path.parent)
    # Written under a temporary name (still .avi: OpenCV picks the container by extension) and
    # renamed, so a path that exists is always a complete clip.
    tmp = path.with_name(f".{path.stem}.tmp.avi")
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] = (0, 0)
    try:
        for _, jpeg in frames:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            if writer is None:
                size = (image.shape[1], image.shape[0])
                fourcc = cv2.VideoWriter.fourcc(*"MJPG")
                writer = cv2.VideoWriter(str(tmp), fourcc, fps, size)
                if not writer.isOpened():
                    raise OSError(f"cannot open a video writer for {tmp}")
            elif (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size)
            writer.write(image)
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError("no decodable frames")
    tmp.chmod(0o600)
    os.replace(tmp, path)
