"""Opening streams: in parallel, bounded, never in the way of another source or of a stop.

A "black hole" camera accepts the connection and never answers, so an open against it hangs until
its timeout; it counts the connections still waiting, so what the tests judge is what the opens
did (overlapped or not, gave up or not), never how long they took.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from detector_service.settings import DetectorSettings
from tests.detector_service.blackhole import BlackHole
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

# Long enough that no open against the black hole gives up while a test still needs it pending.
OPEN_TIMEOUT_S = 8.0


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0, backend="none", linger_s=0.2, data_dir=tmp_path, open_timeout_s=OPEN_TIMEOUT_S
    )


def stream(source_id: str, uri: str) -> pb.SourceSpec:
    # On demand: these tests follow opens that a subscription starts and its end abandons.
    mode = pb.SOURCE_MODE_ON_DEMAND
    return pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_STREAM, uri=uri, mode=mode)


async def get(stub: Stub, source_id: str) -> pb.Source:
    return (await stub.GetSource(pb.GetSourceRequest(source_id=source_id))).source


async def until(condition: Callable[[], bool], limit_s: float = 20.0) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - polling a counter of another thread
            await asyncio.sleep(0.02)


async def first_frame(stub: Stub, source_id: str) -> pb.Frame:
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id))
    try:
        async for message in call:
            if message.HasField("frame"):
                return message.frame
    finally:
        call.cancel()
    raise AssertionError(f"{source_id}: the subscription ended without a frame")


async def test_a_camera_that_never_answers_does_not_hold_up_another_sources_open(
    detector_stub: Stub, black_hole: BlackHole, rtsp_camera: RtspCamera
) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=stream("hole", black_hole.url)))
    await detector_stub.AddSource(pb.AddSourceRequest(source=stream("cam", rtsp_camera.url())))
    hole = detector_stub.Subscribe(pb.SubscribeRequest(source_id="hole"))
    try:
        await until(lambda: black_hole.pending == 1)
        frame = await asyncio.wait_for(first_frame(detector_stub, "cam"), 30)
        # The camera's frame came while the hung open was still waiting, not after it gave up.
        assert black_hole.closed == 0
        assert black_hole.pending == 1
        assert (frame.width, frame.height) == (320, 240)
    finally:
        hole.cancel()


async def test_sources_opening_together_open_in_parallel(
    detector_stub: Stub, black_hole: BlackHole
) -> None:
    count = 6
    for n in range(count):
        spec = stream(f"hole{n}", black_hole.url)
        await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    calls = [
        detector_stub.Subscribe(pb.SubscribeRequest(source_id=f"hole{n}")) for n in range(count)
    ]
    try:
        # Either every open is waiting at once, or the first gave up before the rest began.
        await until(lambda: black_hole.most_pending == count or black_hole.closed > 0, 30)
        assert black_hole.most_pending == count, (black_hole.most_pending, black_hole.closed)
    finally:
        for call in calls:
            call.cancel()


async def test_the_linger_stops_a_source_whose_open_hangs(
    detector_stub: Stub, black_hole: BlackHole
) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=stream("hole", black_hole.url)))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="hole"))
    await until(lambda: black_hole.pending == 1)
    call.cancel()

    async def stopped() -> None:
        while (await get(detector_stub, "hole")).state != pb.SOURCE_STATE_STOPPED:  # noqa: ASYNC110 - polling the service
            await asyncio.sleep(0.05)

    # STOPPED after the linger while the capture thread is still inside its open ...
    await asyncio.wait_for(stopped(), 10)
    assert black_hole.closed == 0
    assert black_hole.pending == 1
    # ... and it stays STOPPED when that open finally fails: the abandoned run has no say.
    await until(lambda: black_hole.closed == 1, OPEN_TIMEOUT_S + 20)
    for _ in range(10):
        source = await get(detector_stub, "hole")
        assert source.state == pb.SOURCE_STATE_STOPPED, source
        await asyncio.sleep(0.05)


async def test_a_refused_stream_names_the_camera_without_its_password(
    detector_stub: Stub,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: connections are refused
    uri = f"rtsp://admin:hunter2@127.0.0.1:{port}/stream"
    await detector_stub.AddSource(pb.AddSourceRequest(source=stream("locked", uri)))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="locked"))
    try:
        source = await get(detector_stub, "locked")
        async with asyncio.timeout(20):
            while not source.last_error:
                await asyncio.sleep(0.05)
                source = await get(detector_stub, "locked")
    finally:
        call.cancel()
    assert "cannot open rtsp://admin:***@127.0.0.1" in source.last_error
    assert "hunter2" not in source.last_error


async def test_frames_arrive_from_a_live_rtsp_camera(
    detector_stub: Stub, rtsp_camera: RtspCamera
) -> None:
    await detector_stub.AddSource(pb.AddSourceRequest(source=stream("cam", rtsp_camera.url())))
    call = detector_stub.Subscribe(pb.SubscribeRequest(source_id="cam"))
    got: list[pb.Frame] = []
    try:
        async with asyncio.timeout(30):
            async for message in call:
                if message.HasField("frame"):
                    got.append(message.frame)
                    if len(got) == 10:
                        break
    finally:
        call.cancel()
    assert all((f.width, f.height) == (320, 240) and f.jpeg for f in got)
    assert [f.sequence for f in got] == sorted({f.sequence for f in got})
    source = await get(detector_stub, "cam")
    assert source.last_error == ""
