"""A failing model over gRPC: frames go on unannotated and flagged, health follows the model.

The Roboflow backend talks to the local fake (``backends/fake_roboflow.py``) over 127.0.0.1; the
fake answers 500 until the test lets it answer 200 again.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from detector_service.server import SERVICE_NAME, DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.fake_roboflow import MODEL_ID, FakeRoboflow
from tests.detector_service.backends.fake_roboflow import serve as serve_fake
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

# A key no test would type by accident: seeing it anywhere in output is a leak.
CANARY = "rf_CANARY_5e1d0a9c42"
GUN = {
    "x": 100.0,
    "y": 50.0,
    "width": 40.0,
    "height": 20.0,
    "confidence": 0.91,
    "class": "gun",
    "class_id": 0,
}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    # Settings read the process environment and ./.env; neither may supply a real key here.
    for name in ("ROBOFLOW_API_KEY", "VIGIL_DETECTOR_ROBOFLOW_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeRoboflow]:
    with serve_fake(FakeRoboflow(predictions=[GUN])) as running:
        yield running


@pytest.fixture
async def server(
    fake: FakeRoboflow, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[DetectorServer]:
    caplog.set_level(logging.DEBUG)
    settings = DetectorSettings(
        port=0,
        backend="roboflow",
        roboflow_api_url=fake.url,
        roboflow_api_mode="v0",
        roboflow_model_id=MODEL_ID,
        roboflow_api_key=CANARY,
        roboflow_timeout_s=5.0,
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )
    running = await serve(settings)
    try:
        yield running
    finally:
        await running.stop(0)


@pytest.fixture
async def channel(server: DetectorServer) -> AsyncIterator[grpc.aio.Channel]:
    address = f"127.0.0.1:{server.port}"
    async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as opened:
        yield opened


async def health(channel: grpc.aio.Channel) -> tuple[Any, Any]:
    stub = health_pb2_grpc.HealthStub(channel)
    overall = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    detector = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    return overall.status, detector.status


async def wait_for_health(channel: grpc.aio.Channel, wanted: Any, limit_s: float) -> float:
    """Seconds until both the server and the detector service report ``wanted``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(limit_s):
        while await health(channel) != (wanted, wanted):  # noqa: ASYNC110 - polling: no event to wait on
            await asyncio.sleep(0.05)
    return loop.time() - started


async def next_frame(stream: AsyncIterator[pb.SubscribeResponse]) -> pb.Frame:
    async with asyncio.timeout(5):
        while not (message := await anext(stream)).HasField("frame"):
            pass
    return message.frame


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        assert CANARY[:8] not in text  # not even a prefix that narrows the key down


async def test_failing_model_flags_frames_and_turns_health_not_serving_until_it_recovers(
    server: DetectorServer,
    channel: grpc.aio.Channel,
    fake: FakeRoboflow,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub: Stub = pb_grpc.DetectorServiceStub(channel)
    fake.failures["v0"] = [500] * 100_000
    assert await health(channel) == (SERVING, SERVING)
    spec = pb.SourceSpec(
        id="cam", kind=pb.SOURCE_KIND_TEST_PATTERN, width=320, height=240, max_fps=15
    )
    await stub.AddSource(pb.AddSourceRequest(source=spec))
    call = stub.Subscribe(pb.SubscribeRequest(source_id="cam"))
    stream = call.__aiter__()
    try:
        # Frames keep flowing, unannotated, each flagged with the failure.
        failed = [await next_frame(stream) for _ in range(5)]
        unhealthy_after = await wait_for_health(channel, NOT_SERVING, limit_s=5)
        failed += [await next_frame(stream) for _ in range(5)]
        before = (await stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
        # Waits for the count to rise rather than sleeping a fixed time: a loaded CI machine
        # runs the pattern at a third of its 15 fps.
        async with asyncio.timeout(5):
            while True:
                after = (await stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
                if after.counters.detection_errors >= before.counters.detection_errors + 3:
                    break
                await asyncio.sleep(0.05)

        # The server answers 200 again: health comes back and frames are annotated again.
        fake.failures["v0"].clear()
        healthy_after = await wait_for_health(channel, SERVING, limit_s=5)
        recovered = await next_frame(stream)
        while recovered.HasField("detection_error"):  # a frame already in flight
            recovered = await next_frame(stream)
        recovered_source = (await stub.GetSource(pb.GetSourceRequest(source_id="cam"))).source
    finally:
        call.cancel()

    assert unhealthy_after < 3.0
    assert healthy_after < 3.0
    sequences = [f.sequence for f in failed]
    assert sequences == sorted(set(sequences))
    for frame in failed:
        assert frame.HasField("detection_error")
        assert frame.detection_error.code == "DETECTION_FAILED"
        assert frame.detection_error.retryable
        assert "HTTP 500" in frame.detection_error.message
        assert not frame.detections
        assert (frame.width, frame.height) == (320, 240)
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape == (240, 320, 3)
    # The source counts its failures, and the count rises while the model keeps failing.
    assert before.state == pb.SOURCE_STATE_LIVE
    assert before.counters.detection_errors >= len(failed)
    assert after.counters.detection_errors >= before.counters.detection_errors + 3
    assert recovered_source.counters.detection_errors >= after.counters.detection_errors
    assert server.batcher.errors >= 3

    assert not recovered.HasField("detection_error")
    (gun,) = recovered.detections
    assert (gun.class_name, gun.is_weapon) == ("gun", True)
    assert gun.confidence == pytest.approx(0.91)

    # The key went to the fake on every request, and came back in its error bodies...
    assert all(r.query.get("api_key") == CANARY for r in fake.routes("v0"))
    # ...but never reached a frame, a source's last error, or the log.
    assert_no_canary(
        *(f.detection_error.message for f in failed),
        before.last_error,
        after.last_error,
        recovered_source.last_error,
        caplog.text,
        *(r.getMessage() for r in caplog.records),
    )
    assert "NOT_SERVING" in caplog.text
    assert "detection failed" in caplog.text
