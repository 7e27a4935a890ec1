"""The Detect stream at its limits: deadlines and messages over the service's size limit."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import numpy as np
import pytest

from detector_service.annotate import encode_jpeg
from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from vigil.core.serving import DEFAULT_MAX_MESSAGE_BYTES
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

FRAME = encode_jpeg(np.full((120, 160, 3), 90, np.uint8), 80)


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(port=0, backend="none", data_dir=tmp_path / "data")


async def requests(*jpegs: bytes, then_wait_s: float = 0.0) -> AsyncIterator[pb.DetectRequest]:
    for i, jpeg in enumerate(jpegs):
        yield pb.DetectRequest(source_id="upload", sequence=i + 1, jpeg=jpeg)
    if then_wait_s:
        await asyncio.sleep(then_wait_s)  # a client that keeps its stream open


async def wait_for_producers(server: DetectorServer, count: int) -> None:
    async with asyncio.timeout(5):
        while server.batcher._producers != count:  # noqa: ASYNC110 - polling: no event to wait on
            await asyncio.sleep(0.02)


async def assert_detect_works(stub: Stub) -> None:
    (response,) = [r async for r in stub.Detect(requests(FRAME), timeout=10)]
    assert response.sequence == 1
    assert not response.HasField("error")
    assert (response.width, response.height) == (160, 120)


async def test_a_1ms_deadline_is_deadline_exceeded(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    # A request stream that sends nothing within the deadline: grpcio's client turns a write
    # that races the deadline into INTERNAL ("Failed execute_batch", grpc/grpc#36066), which
    # would say nothing about the service.
    call = detector_stub.Detect(requests(then_wait_s=30), timeout=0.001)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for_producers(detector, 0)
    await assert_detect_works(detector_stub)


async def test_a_deadline_mid_stream_ends_the_call_and_frees_the_service(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    # The first frame is answered; the stream then stays open past its deadline.
    call = detector_stub.Detect(requests(FRAME, then_wait_s=30), timeout=0.5)
    stream = call.__aiter__()
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.sequence == 1
    assert not first.HasField("error")
    assert detector.batcher._producers == 1  # the open stream counts as a producer
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(anext(stream), 5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The service ended its side too: no producer left behind to hold batches open.
    await wait_for_producers(detector, 0)
    await assert_detect_works(detector_stub)


async def test_an_oversize_frame_is_resource_exhausted(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    oversize = b"\xff\xd8" + bytes(17 * 1024 * 1024)
    assert len(oversize) > DEFAULT_MAX_MESSAGE_BYTES
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in detector_stub.Detect(requests(FRAME, oversize), timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await wait_for_producers(detector, 0)
    # The channel and the service are fine for the next caller.
    await assert_detect_works(detector_stub)
