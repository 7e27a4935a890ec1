"""A stopped source holds no captured picture: idle sources cost next to no memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from detector_service.backends.base import Image
from detector_service.backends.passthrough import PassthroughBackend
from detector_service.batcher import InferenceBatcher
from detector_service.capture import FrameReader
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
