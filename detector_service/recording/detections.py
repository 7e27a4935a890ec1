"""The boxes of a recorded source's frames, stored with its recording so that a player can draw
them over the recorded video (ListDetections).

Stored: the frames the model ran on (``Recorder.detected`` leaves out the frames the motion gate
skipped, which only carry the boxes of the last detected one) that show objects, and one empty
entry where the objects are gone. A still scene with a tracked object is detected again every
``motion_refresh_s``, so its boxes stay fresh in the store too.

A 15 fps camera would cost a transaction per frame: frames wait in memory and go to the index in
one transaction once the oldest has waited ``FLUSH_S``, on the recorder's maintenance thread
(never a processing thread or the event loop). A reader flushes first, so it sees every frame
handed over before it asked; the retention pass and the recorder's close flush too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.recording.contract import RecordingIndex
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

# Seconds a detected frame may wait in memory for its batch.
FLUSH_S = 1.0


@dataclass(frozen=True, slots=True)
class _Entry:
    source: str
    capture_ns: int
    width: int
    height: int
    # Shared read-only with the frame's subscribers: serialized on the maintenance thread.
    detections: Sequence[common_pb2.Detection]

    def row(self) -> tuple[str, float, bytes]:
        at = Timestamp()
        at.FromNanoseconds(self.capture_ns)
        frame = pb.FrameDetections(
            capture_time=at, width=self.width, height=self.height, detections=self.detections
        )
        return self.source, self.capture_ns / 1e9, frame.SerializeToString()


class DetectionLog:
    """Detected frames on their way to the index; ``add`` is called by processing threads."""

    def __init__(self, index: RecordingIndex, jobs: concurrent.futures.Executor) -> None:
        self.index = index
        self.jobs = jobs
        self._lock = threading.Lock()
        self._pending: list[_Entry] = []
        self._oldest = 0.0  # when the oldest pending entry came (monotonic)
        self._scheduled = False
        # Per source: whether its last stored entry showed objects.
        self._showing: dict[str, bool] = {}

    def add(
        self,
        source: str,
        capture_ns: int,
        width: int,
        height: int,
        detections: Sequence[common_pb2.Detection],
    ) -> None:
        """A detected frame of ``source``: kept if it shows objects, or if it is the first frame
        without them after some that had."""
        now = time.monotonic()
        with self._lock:
            if not detections and not self._showing.get(source, False):
                return
            self._showing[source] = bool(detections)
            if not self._pending:
                self._oldest = now
            self._pending.append(_Entry(source, capture_ns, width, height, detections))
            if self._scheduled or now - self._oldest < FLUSH_S:
                return
            self._scheduled = True
        # Shutting down: the recorder's close flushes what is left.
        with contextlib.suppress(RuntimeError):
            self.jobs.submit(self.flush)

    def flush(self) -> None:
        """Write what waits, in one transaction (blocking: the index)."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
        if not pending:
            return
        try:
            self.index.add_detections([entry.row() for entry in pending])
        except Exception:
            # Lost boxes leave the video without them; the recording itself goes on.
            log.exception("%d detected frames could not be stored", len(pending))

    def frames(self, source: str, start: float, end: float) -> list[pb.FrameDetections]:
        """``source``'s stored frames captured in [start, end), oldest first (blocking)."""
        self.flush()
        return [pb.FrameDetections.FromString(b) for b in self.index.detections(source, start, end)]
