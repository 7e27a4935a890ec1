"""Full-size viewing: a ``main_stream`` subscriber gets the camera's main stream, opened while
watched, with the detection stream's boxes scaled onto it; real RTSP cameras and the test model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import TYPE_CHECKING

import cv2
import grpc
import numpy as np
import pytest

from detector_service.server import serve
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from vigil.bench.rtsp import RtspCamera
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    Stub = pb_grpc.DetectorServiceAsyncStub

pytestmark = pytest.mark.timeout(90)

OPENED = "main stream opened"
CLOSED = "main stream closed"


@pytest.fixture(scope="module")
def cameras() -> Iterator[tuple[RtspCamera, RtspCamera]]:
    """A camera's two streams, as two servers: detection 320x240, main 640x480, both blue (a
    "knife" to the test model)."""
    with (
        RtspCamera(("sub",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue") as sub,
        RtspCamera(
            ("main",), width=640, height=480, fps=10, keyframe_s=1.0, pattern="blue"
        ) as main,
    ):
        yield sub, main


@contextlib.asynccontextmanager
async def detector(tmp_path: pathlib.Path) -> AsyncIterator[Stub]:
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )
    server = await serve(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


async def frames_with_boxes(call: AsyncIterable[pb.SubscribeResponse], n: int) -> list[pb.Frame]:
    """The next ``n`` frames that carry detections."""
    out: list[pb.Frame] = []
    async with asyncio.timeout(30):
        async for item in call:
            if item.HasField("frame") and item.frame.detections:
                out.append(item.frame)
                if len(out) == n:
                    return out
    raise AssertionError("the stream ended")


def box(frame: pb.Frame) -> tuple[float, ...]:
    [found] = frame.detections
    b = found.box
    return (b.x_min, b.y_min, b.x_max, b.y_max)


async def until_logged(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> None:
    async with asyncio.timeout(10):
        while sum(text in r.getMessage() for r in caplog.records) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_main_stream_frames_are_full_size_with_the_detection_boxes_scaled(
    cameras: tuple[RtspCamera, RtspCamera],
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service.main_view")
    sub, main = cameras
    async with detector(tmp_path) as stub:
        spec = pb.SourceSpec(
            id="gate", kind=pb.SOURCE_KIND_STREAM, uri=sub.url(), record_uri=main.url()
        )
        await stub.AddSource(pb.AddSourceRequest(source=spec))
        tiles = stub.Subscribe(pb.SubscribeRequest(source_id="gate"))
        [small] = await frames_with_boxes(tiles, 1)
        # A tile viewer alone never opens the main stream.
        assert not any(OPENED in r.getMessage() for r in caplog.records)
        full = stub.Subscribe(pb.SubscribeRequest(source_id="gate", main_stream=True))
        big = await frames_with_boxes(full, 3)
        await until_logged(caplog, OPENED)
        assert (small.width, small.height) == (320, 240)
        for frame in big:
            assert (frame.width, frame.height) == (640, 480)
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None
            assert image.shape == (480, 640, 3)
            [found] = frame.detections
            assert found.class_name == "knife"
            # The still picture's box, found on the detection stream, doubled.
            assert box(frame) == pytest.approx([2 * v for v in box(small)], abs=2.0)
            # Drawn on the picture: the box's edge is red, not the camera's blue.
            x0, y0 = (round(v) for v in box(frame)[:2])
            b, g, r = image[y0 + 10, x0].tolist()
            assert r > 150, (b, g, r)
            assert b < 100, (b, g, r)
        full.cancel()
        # The last full-size viewer left: closed after the linger, while tiles go on.
        await until_logged(caplog, CLOSED)
        assert (await frames_with_boxes(tiles, 1))[0].width == 320
        # A new full-size viewer opens it again.
        again = stub.Subscribe(pb.SubscribeRequest(source_id="gate", main_stream=True))
        assert (await frames_with_boxes(again, 1))[0].width == 640
        await until_logged(caplog, OPENED, count=2)
        # Removing the source closes its main stream and ends its streams.
        await stub.RemoveSource(pb.RemoveSourceRequest(source_id="gate"))
        await until_logged(caplog, CLOSED, count=2)
        async with asyncio.timeout(10):
            rest = [item async for item in again]
        assert all(not item.HasField("frame") or item.frame.width == 640 for item in rest)
        tiles.cancel()


async def test_a_source_without_a_main_stream_ignores_the_flag(
    cameras: tuple[RtspCamera, RtspCamera],
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service.main_view")
    sub, _ = cameras
    async with detector(tmp_path) as stub:
        spec = pb.SourceSpec(id="yard", kind=pb.SOURCE_KIND_STREAM, uri=sub.url())
        await stub.AddSource(pb.AddSourceRequest(source=spec))
        call = stub.Subscribe(pb.SubscribeRequest(source_id="yard", main_stream=True))
        frames = await frames_with_boxes(call, 2)
        call.cancel()
    assert [(f.width, f.height) for f in frames] == [(320, 240)] * 2
    assert all(f.jpeg for f in frames)
    assert not any(OPENED in r.getMessage() for r in caplog.records)


async def test_a_main_stream_dropped_from_the_source_ends_its_full_size_streams(
    cameras: tuple[RtspCamera, RtspCamera],
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service.main_view")
    sub, main = cameras
    async with detector(tmp_path) as stub:
        spec = pb.SourceSpec(
            id="dock", kind=pb.SOURCE_KIND_STREAM, uri=sub.url(), record_uri=main.url()
        )
        await stub.AddSource(pb.AddSourceRequest(source=spec))
        full = stub.Subscribe(pb.SubscribeRequest(source_id="dock", main_stream=True))
        assert (await frames_with_boxes(full, 1))[0].width == 640
        # Sent back as handed out (URI masked), without its main stream.
        shown = (await stub.GetSource(pb.GetSourceRequest(source_id="dock"))).source.spec
        shown.record_uri = ""
        await stub.UpdateSource(pb.UpdateSourceRequest(source=shown))
        await until_logged(caplog, CLOSED)
        async with asyncio.timeout(10):
            rest = [item async for item in full]
        assert all(not item.HasField("frame") or item.frame.width == 640 for item in rest)
        # Asked again, the same call now gets the detection stream's frames.
        again = stub.Subscribe(pb.SubscribeRequest(source_id="dock", main_stream=True))
        assert (await frames_with_boxes(again, 1))[0].width == 320
        again.cancel()
