"""The reopen backoff of a source's capture loop: 0.5 s doubling to 30 s, reset by a frame.

The capture loop runs on the test's thread with a stand-in for its "stopping" event that records
each wait instead of sleeping, so the whole sequence takes no time.
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
from detector_service.pipeline import BACKOFF_MAX_S, BACKOFF_START_S, LiveSource, next_backoff
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


def test_policy_doubles_from_half_a_second_and_stops_at_thirty() -> None:
    delays = [BACKOFF_START_S]
    for _ in range(9):
        delays.append(next_backoff(delays[-1]))
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert BACKOFF_MAX_S == 30.0


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

    assert stopping.waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 0.5, 1, 2]
    assert not script
    assert source.counters.reconnects == 13
    assert source.state == pb.SOURCE_STATE_RECONNECTING
    assert source.last_error == "cannot open rtsp://cam"
