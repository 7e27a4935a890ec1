"""A camera's main stream at full size, for those who subscribe with ``main_stream``.

NVRs detect on a camera's low-resolution substream and show its main stream when a viewer asks for
the full picture. The main stream (the source's ``record_uri``) is opened by its own capture thread
on the first such subscriber and closed shortly after the last one leaves (the source's linger).
No model runs on it: each frame gets the detection stream's newest boxes, scaled from the detection
frame's size to the main frame's, drawn and encoded on the capture thread, at most ``max_fps`` times
a second, and handed to the main subscribers' newest-wins queues by the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from detector_service.annotate import draw, encode_jpeg
from detector_service.backends.base import Image
from detector_service.capture import EndOfStream, open_reader
from detector_service.detections import Detections
from detector_service.settings import DetectorSettings
from detector_service.source_uri import SourceUri
from detector_service.subscribers import Processed, Subscriber
from vigil.common.v1 import common_pb2
from vigil.core.backoff import Backoff
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

# Boxes of a detection frame older than this are not drawn: the detection stream has stalled
# (reconnecting, or its camera froze), and boxes from then would show what is no longer there.
STALE_NS = 2_000_000_000


class MainView:
    """One source's main stream, read while somebody watches it at full size."""

    def __init__(
        self,
        source_id: str,
        settings: DetectorSettings,
        loop: asyncio.AbstractEventLoop,
        newest: Callable[[], Processed | None],
    ) -> None:
        self.source_id = source_id
        self.settings = settings
        self.loop = loop
        # The detection stream's newest processed frame (read from the capture thread).
        self._newest = newest
        self.uri = SourceUri("")
        self.max_fps = settings.max_fps
        self.subscribers: set[Subscriber] = set()
        # Set when the current run must end; None while the main stream is closed.
        self._stopping: threading.Event | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._sequence = 0

    # --- event-loop side -------------------------------------------------------------------

    def configure(self, uri: SourceUri, max_fps: float) -> None:
        """Take the source's main stream and rate; an open one is reopened if they changed."""
        if (uri, max_fps) == (self.uri, self.max_fps):
            return
        self.uri, self.max_fps = uri, max_fps
        if self._stopping is not None:
            self.stop()
        if not uri.reveal():
            # The source no longer names a main stream: its full-size viewers' streams end.
            for sub in self.subscribers:
                sub.frames.close()
        elif self.subscribers:
            self.start()

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._stopping is None and self.uri.reveal():
            self.start()

    def discard(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        if not self.subscribers and self._stopping is not None and self._linger is None:
            self._linger = self.loop.call_later(self.settings.linger_s, self.stop)

    def start(self) -> None:
        self._stopping = stopping = threading.Event()
        log.info("source %s: main stream opened for full-size viewing", self.source_id)
        threading.Thread(
            target=self._run,
            args=(stopping, self.uri, self.max_fps),
            name=f"main-{self.source_id}",
            daemon=True,
        ).start()

    def stop(self) -> None:
        """Close the main stream; its thread notices within a frame or a read timeout."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._stopping is not None:
            self._stopping.set()
            self._stopping = None
            log.info("source %s: main stream closed", self.source_id)

    def _publish(self, run: threading.Event, item: Processed) -> None:
        if run.is_set():
            return  # from a run stopped since
        for sub in self.subscribers:
            if item.jpeg or sub.omit_jpeg:
                sub.frames.put(item)

    # --- thread side ---------------------------------------------------------------------------

    def _run(self, stopping: threading.Event, uri: SourceUri, max_fps: float) -> None:
        spec = pb.SourceSpec(id=self.source_id, kind=pb.SOURCE_KIND_STREAM, uri=uri.reveal())
        backoff = Backoff(initial_s=0.5, max_s=30.0)
        interval = 1.0 / max_fps
        while not stopping.is_set():
            try:
                reader = open_reader(spec, max_fps, self.settings.open_timeout_s)
            except Exception as exc:
                log.warning("main stream of %s: %s", self.source_id, uri.redact(str(exc)))
                stopping.wait(backoff.next())
                continue
            try:
                next_at = time.monotonic()
                while not stopping.is_set():
                    image = reader.read()
                    backoff.reset()
                    now = time.monotonic()
                    if now < next_at:
                        continue  # decoded (the stream needs it), not shown: over max_fps
                    next_at = max(next_at + interval, now)
                    item = self._frame(image, time.time_ns())
                    if stopping.is_set():
                        return
                    self.loop.call_soon_threadsafe(self._publish, stopping, item)
            except EndOfStream:
                stopping.wait(backoff.next())
            except Exception as exc:
                # As the detection capture: whatever broke the read, the stream is reopened.
                log.warning("main stream of %s: %s", self.source_id, uri.redact(str(exc)))
                stopping.wait(backoff.next())
            finally:
                reader.close()

    def _frame(self, image: Image, capture_ns: int) -> Processed:
        height, width = image.shape[0], image.shape[1]
        newest = self._newest()
        if newest is not None and capture_ns - newest.capture_ns > STALE_NS:
            newest = None
        detections = scaled(newest, width, height) if newest is not None else []
        weapons = self.settings.weapon_classes
        draw(image, as_detections(detections), weapons)
        # A copy of the subscribers: the event loop adds and removes them meanwhile.
        pictures = any(not sub.omit_jpeg for sub in list(self.subscribers))
        self._sequence += 1
        return Processed(
            sequence=self._sequence,
            capture_ns=capture_ns,
            jpeg=encode_jpeg(image, self.settings.jpeg_quality) if pictures else b"",
            width=width,
            height=height,
            detections=detections,
            inference_ms=0.0,
            error=newest.error if newest is not None else None,
            source_id=self.source_id,
        )


def scaled(item: Processed, width: int, height: int) -> list[common_pb2.Detection]:
    """The detections of a detection-stream frame, moved onto a ``width``×``height`` frame."""
    sx, sy = width / max(item.width, 1), height / max(item.height, 1)
    out = []
    for found in item.detections:
        moved = common_pb2.Detection()
        moved.CopyFrom(found)
        box = moved.box
        box.x_min, box.x_max = box.x_min * sx, box.x_max * sx
        box.y_min, box.y_max = box.y_min * sy, box.y_max * sy
        out.append(moved)
    return out


def as_detections(found: list[common_pb2.Detection]) -> Detections:
    """Boxes from a frame's protos, for drawing."""
    boxes = [(d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max) for d in found]
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        confidence=np.array([d.confidence for d in found], np.float32),
        class_id=np.array([d.class_id for d in found], np.int32),
        class_name=tuple(d.class_name for d in found),
        model=found[0].model if found else "",
        track_id=np.array([d.track_id if d.HasField("track_id") else -1 for d in found], np.int32),
    )
