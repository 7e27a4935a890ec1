"""Inference batches across live sources, on the ONNX backend with a dynamic batch dimension.

Several sources live at once share the inference thread, which waits up to ``batch_wait_s`` to
fill a batch; one source alone must never wait for company that cannot come.
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest

from detector_service.backends.base import Image
from detector_service.batcher import InferenceBatcher
from detector_service.detections import Detections
from detector_service.server import DetectorServer
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

# Long enough that a batch that waited for nothing would show, short enough for 15 fps.
BATCH_WAIT_S = 0.05


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        batch_wait_s=BATCH_WAIT_S,
        data_dir=tmp_path / "data",
        linger_s=0.2,
    )


class Recorder:
    """Wraps the batcher: when each frame was submitted, and each batch's start and size."""

    def __init__(self, batcher: InferenceBatcher, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.submitted: list[float] = []
        self.batches: list[tuple[float, int]] = []
        self.producers: list[int] = []
        real_submit, real_detect = batcher.submit, batcher.backend.detect

        def submit(image: Image) -> Any:
            with self.lock:
                self.submitted.append(time.monotonic())
            return real_submit(image)

        def detect(images: Sequence[Image]) -> list[Detections]:
            with self.lock:
                self.batches.append((time.monotonic(), len(images)))
                # Producers the batcher saw for this batch (sources live, Detect streams open).
                self.producers.append(batcher._producers)
            return real_detect(images)

        monkeypatch.setattr(batcher, "submit", submit)
        monkeypatch.setattr(batcher.backend, "detect", detect)

    @property
    def sizes(self) -> list[int]:
        with self.lock:
            return [size for _, size in self.batches]


def pattern(source_id: str) -> pb.SourceSpec:
    return pb.SourceSpec(
        id=source_id, kind=pb.SOURCE_KIND_TEST_PATTERN, width=320, height=240, max_fps=15
    )


async def frames(stub: Stub, source_id: str, count: int) -> list[pb.Frame]:
    got: list[pb.Frame] = []
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id))
    try:
        async for message in call:
            if message.HasField("frame"):
                got.append(message.frame)
                if len(got) == count:
                    break
    finally:
        call.cancel()
    return got


async def test_live_sources_share_batches(
    detector: DetectorServer, detector_stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(detector.batcher, monkeypatch)
    assert detector.batcher.backend.max_batch > 1
    ids = [f"cam{i}" for i in range(4)]
    for source_id in ids:
        await detector_stub.AddSource(pb.AddSourceRequest(source=pattern(source_id)))
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(frames(detector_stub, source_id, 20) for source_id in ids)), 15
    )
    elapsed = time.monotonic() - started

    for got in results:
        assert len(got) == 20
        assert all(not f.HasField("detection_error") for f in got)
        assert all(f.inference_ms > 0 for f in got)  # the model ran on every frame
    # Batching did not hold the sources back: 20 frames at 15 fps is 1.3 s.
    assert elapsed < 6.0
    sizes = recorder.sizes
    batcher = detector.batcher
    assert batcher.frames > batcher.batches, sizes
    assert max(sizes) > 1
    assert max(sizes) <= batcher.backend.max_batch
    assert sum(sizes) == batcher.frames
    # Four sources at 15 fps and a 50 ms wait: most frames share their batch.
    shared = sum(size for size in sizes if size > 1)
    assert shared >= 0.5 * sum(sizes), sizes


async def test_a_single_source_runs_batches_of_one_without_waiting(
    detector: DetectorServer, detector_stub: Stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(detector.batcher, monkeypatch)
    await detector_stub.AddSource(pb.AddSourceRequest(source=pattern("alone")))
    got = await asyncio.wait_for(frames(detector_stub, "alone", 20), 10)

    assert len(got) == 20
    batcher = detector.batcher
    assert batcher.frames == batcher.batches
    assert set(recorder.sizes) == {1}
    assert set(recorder.producers) == {1}
    # Each frame went into the model at once, not after the 50 ms a shared batch may wait. A
    # busy machine may stall a thread now and then, so the bound is on most frames, not all.
    with recorder.lock:
        pairs = list(zip(recorder.submitted, recorder.batches, strict=False))
    waits = [started - submitted for submitted, (started, _) in pairs]
    assert len(waits) >= 20
    assert all(w >= 0 for w in waits)
    assert statistics.median(waits) < BATCH_WAIT_S / 5, waits
    assert sum(w >= BATCH_WAIT_S * 0.8 for w in waits) <= len(waits) // 5, waits
