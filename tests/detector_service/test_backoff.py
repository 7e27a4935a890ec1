"""The reopen backoff of a source's capture loop: 0.5 s doubling to 30 s, reset by a frame.

The capture loop runs on the test's thread with a stand-in for its "stopping" event that records
each wait instead of sleeping, so the whole sequence takes no time. The schedule itself (doubling,
cap, jitter) is ``vigil.core.backoff``'s, tested in tests/vigil/core/test_backoff.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from detector_service.backends.base import Image
from detector_service.backends.passthrough import PassthroughBackend
from detector_service.batcher import InferenceBatcher
from detector_service.capture import CaptureError, FrameReader
from detector_service.pipeline import LiveSource
from detector_service.settings import DetectorSettings
from vigil.detector.v1 import detector_service_pb2 as pb


class RecordedStop(threading.Event):
    """Returns from every wait at once, recording its timeout; sets itself after ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if len(self.waits) >= self.limit:
            self.set()
        return self.is_set()


class OneFrame(FrameReader):
    """Opens, gives one frame, then breaks like a stream that died."""

    def __init__(self) -> None:
        self.given = False

    def read(self) -> Image:
        if self.given:
            raise CaptureError("no frame from rtsp://cam")
        self.given = True
        return np.zeros((4, 4, 3), np.uint8)


@pytest.fixture
def batcher() -> Iterator[InferenceBatcher]:
    running = InferenceBatcher(PassthroughBackend())
    yield running
    running.close()


async def test_capture_loop_backs_off_and_a_frame_resets_it(batcher: InferenceBatcher) -> None:
    # Ten failed opens, one that works for a frame and then breaks, two more failed opens.
    script: list[CaptureError | None] = [CaptureError("cannot open rtsp://cam")] * 10
    script += [None, CaptureError("cannot open rtsp://cam"), CaptureError("cannot open rtsp://cam")]

    def reader_factory(spec: pb.SourceSpec, fps: float) -> FrameReader:
        outcome = script.pop(0)
        if outcome is not None:
            raise outcome
        return OneFrame()

    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri="rtsp://cam")
    source = LiveSource(
        spec, DetectorSettings(), batcher, asyncio.get_running_loop(), reader_factory=reader_factory
    )
    stopping = RecordedStop(limit=13)
    # On the loop's own thread, so state changes apply at once rather than via the loop.
    source._capture_loop(stopping)

    # Each wait is its step of the schedule, shortened by at most the shared jitter (a fifth).
    schedule = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 0.5, 1, 2]
    assert len(stopping.waits) == len(schedule)
    for waited, step in zip(stopping.waits, schedule, strict=True):
        assert waited is not None
        assert 0.8 * step <= waited <= step, (stopping.waits, schedule)
    assert not script
    assert source.counters.reconnects == 13
    assert source.state == pb.SOURCE_STATE_RECONNECTING
    assert source.last_error == "cannot open rtsp://cam"
