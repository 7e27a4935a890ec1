"""A stopped source holds no captured picture (idle sources cost next to no memory), and its
threads, still in an open or read, outlive the service quietly."""

from __future__ import annotations

import asyncio
import threading
import time
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


class Camera720p(FrameReader):
    """A camera far faster than its source's processing: the one-frame slot is always full."""

    def read(self) -> Image:
        time.sleep(0.002)
        return np.zeros((720, 1280, 3), np.uint8)


@pytest.fixture
def batcher() -> Iterator[InferenceBatcher]:
    running = InferenceBatcher(PassthroughBackend())
    yield running
    running.close()


async def test_a_stopped_source_keeps_no_frame(batcher: InferenceBatcher) -> None:
    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri="rtsp://cam", max_fps=1)
    source = LiveSource(
        spec,
        DetectorSettings(),
        batcher,
        asyncio.get_running_loop(),
        reader_factory=lambda spec, fps: Camera720p(),
    )
    sub = source.subscribe()
    async with asyncio.timeout(20):
        while source._slot.replaced < 5:  # noqa: ASYNC110 - a counter of the capture thread
            await asyncio.sleep(0.01)
    source.unsubscribe(sub)
    source.stop()
    await asyncio.to_thread(source.join, 10)
    assert not any(thread.is_alive() for thread in source._threads)
    assert source.state == pb.SOURCE_STATE_STOPPED
    assert source._slot.frame is None


def test_an_open_returning_after_the_service_loop_closed_is_ignored(
    batcher: InferenceBatcher,
) -> None:
    # An always-on camera's open may hang past shutdown; when it fails at last, its thread must
    # not die calling the closed loop.
    release = threading.Event()

    def hung_open(spec: pb.SourceSpec, fps: float) -> FrameReader:
        release.wait(10)
        raise CaptureError("cannot open rtsp://cam: timed out")

    async def start_and_stop() -> LiveSource:
        spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, mode=pb.SOURCE_MODE_ALWAYS)
        loop = asyncio.get_running_loop()
        source = LiveSource(spec, DetectorSettings(), batcher, loop, reader_factory=hung_open)
        source.start()
        source.stop()
        return source

    source = asyncio.run(start_and_stop())
    died: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, died.append
    try:
        release.set()
        source.join(10)
    finally:
        threading.excepthook = previous
    assert not any(thread.is_alive() for thread in source._threads)
    assert died == []
