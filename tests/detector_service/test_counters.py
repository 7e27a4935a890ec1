"""A live source's counters (fps in and out, model time, replaced frames) and its fps cap."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
import pytest

from detector_service.backends.base import Image
from detector_service.detections import Detections
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

# Rates are counted over the last 2 s: watching a little longer fills the window.
WATCH_S = 2.5


async def watch(stub: Stub, source_id: str) -> tuple[pb.Source, list[pb.Frame]]:
    """Subscribe for WATCH_S seconds of frames; the source as listed while still subscribed."""
    got: list[pb.Frame] = []
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id))
    try:
        async for message in call:
            if message.HasField("frame"):
                got.append(message.frame)
                span_ns = got[-1].capture_time.ToNanoseconds() - got[0].capture_time.ToNanoseconds()
                if span_ns >= WATCH_S * 1e9:
                    break
        listed = await stub.ListSources(pb.ListSourcesRequest())
    finally:
        call.cancel()
    (source,) = [s for s in listed.sources if s.spec.id == source_id]
    return source, got


async def test_fps_in_and_out_are_near_the_default_cap(detector_stub: Stub) -> None:
    source, got = await watch(detector_stub, "default")
    counters = source.counters
    assert source.state == pb.SOURCE_STATE_LIVE
    assert 8.0 <= counters.fps_in <= 16.5, counters
    assert 8.0 <= counters.fps_out <= 16.5, counters
    assert counters.subscribers == 1
    assert counters.frames_published >= len(got)


async def test_a_non_default_cap_is_respected(detector_stub: Stub) -> None:
    spec = pb.SourceSpec(id="five", kind=pb.SOURCE_KIND_TEST_PATTERN, max_fps=5)
    await detector_stub.AddSource(pb.AddSourceRequest(source=spec))
    source, got = await watch(detector_stub, "five")
    assert 3.5 <= source.counters.fps_out <= 5.5, source.counters
    span_s = (got[-1].capture_time.ToNanoseconds() - got[0].capture_time.ToNanoseconds()) / 1e9
    assert (len(got) - 1) / span_s <= 5.5
    # The default source beside it still runs at 15.
    source, _ = await watch(detector_stub, "default")
    assert source.counters.fps_out >= 8.0


async def test_capture_faster_than_processing_replaces_frames(
    detector: DetectorServer, detector_stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = detector.batcher.backend
    real_detect = backend.detect

    def slow_detect(images: Sequence[Image]) -> list[Detections]:
        time.sleep(0.2)  # a model that manages 5 frames a second, against a 15 fps capture
        return real_detect(images)

    monkeypatch.setattr(backend, "detect", slow_detect)
    source, _ = await watch(detector_stub, "default")
    counters = source.counters
    # Capture keeps its pace; the frames processing had no time for were replaced and counted.
    assert counters.fps_in >= 8.0, counters
    assert counters.fps_out <= 6.0, counters
    assert counters.frames_replaced >= 10, counters
    assert counters.inference_ms >= 150, counters


async def test_a_real_model_reports_its_time_per_frame(tmp_path: pathlib.Path) -> None:
    # The offline default (YOLOv3-tiny on the CPU, cached by `make models`).
    server = await serve(DetectorSettings(port=0, backend="yolo", data_dir=tmp_path, linger_s=0.2))
    try:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
            source, got = await watch(pb_grpc.DetectorServiceStub(channel), "default")
    finally:
        await server.stop(0)
    counters = source.counters
    assert not any(f.HasField("detection_error") for f in got)
    # A real network costs milliseconds a frame; the pass-through backend costs microseconds.
    assert counters.inference_ms > 5.0, counters
    assert all(f.inference_ms > 5.0 for f in got)
    # Capture runs at the cap whatever the model costs (the model shares this machine's two
    # cores with it, hence 8); processing at most at the cap, and a frame was published within
    # the 2 s window since one had just arrived.
    assert 8.0 <= counters.fps_in <= 16.5, counters
    assert 0 < counters.fps_out <= 16.5, counters
    assert counters.fps_out <= counters.fps_in + 1.0, counters
