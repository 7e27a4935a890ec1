"""The linger after a source's last subscriber leaves: still live, and a new viewer keeps it so."""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import TYPE_CHECKING

import pytest

from detector_service.settings import DetectorSettings
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

LINGER_S = 2.0


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(port=0, backend="none", linger_s=LINGER_S, data_dir=tmp_path)


async def get(stub: Stub) -> pb.Source:
    return (await stub.GetSource(pb.GetSourceRequest(source_id="default"))).source


async def test_source_stays_live_in_its_linger_and_a_new_subscriber_cancels_the_stop(
    detector_stub: Stub,
) -> None:
    first = detector_stub.Subscribe(pb.SubscribeRequest(source_id="default"))
    async for message in first:
        if message.HasField("frame"):
            break
    first.cancel()
    async with asyncio.timeout(5):
        while (await get(detector_stub)).counters.subscribers:  # noqa: ASYNC110 - polling: no event to wait on
            await asyncio.sleep(0.02)
    left_at = time.monotonic()
    published = (await get(detector_stub)).counters.frames_published

    # Half the linger: still capturing and publishing (to nobody), still LIVE.
    while time.monotonic() - left_at < LINGER_S / 2:
        assert (await get(detector_stub)).state == pb.SOURCE_STATE_LIVE
        await asyncio.sleep(0.05)
    assert (await get(detector_stub)).counters.frames_published > published

    # A new subscriber within the linger finds it LIVE (not restarting) ...
    second = detector_stub.Subscribe(pb.SubscribeRequest(source_id="default"))
    stream = second.__aiter__()
    try:
        opening = await asyncio.wait_for(anext(stream), 5)
        assert time.monotonic() - left_at < LINGER_S, "too slow to test within the linger"
        assert opening.source.state == pb.SOURCE_STATE_LIVE
        # ... and the stop that was due when the linger ended never comes.
        states: list[int] = []
        frames = 0
        async with asyncio.timeout(10):
            while time.monotonic() - left_at < LINGER_S + 1.0:
                message = await anext(stream)
                if message.HasField("source"):
                    states.append(message.source.state)
                    break  # any change (STOPPED, STARTING) is the failure: say so at once
                frames += 1
        source = await get(detector_stub)
    finally:
        second.cancel()
    assert states == []
    assert source.state == pb.SOURCE_STATE_LIVE
    assert source.counters.subscribers == 1
    assert frames >= 10  # about 1.5 s at 15 fps, and more
