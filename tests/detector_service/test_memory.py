"""An idle detector gives back the memory its model and streams used.

OpenCV's DNN holds ~250 MB beyond the weights once it has run (Winograd-packed weights, a buffer
per layer for the last batch), and glibc keeps freed frames in its arenas: a detector that had
streamed once kept that peak for ever (~630 MB with two idle sources in the field).
"""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time

import grpc

from detector_service.backends.darknet import DarknetYoloBackend
from detector_service.batcher import InferenceBatcher
from detector_service.settings import DetectorSettings
from tests.detector_service.scenes import people_scene
from vigil.bench.source_memory import rss_mb
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.loadgen import spawn

# The model's working memory alone is ~250 MB; a release that returns less did not happen.
RETURNED_MB = 150


async def stream_frames(address: str, count: int) -> None:
    async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.DetectorServiceStub(channel)
        call = stub.Subscribe(pb.SubscribeRequest(source_id="default", omit_jpeg=True))
        seen = 0
        async with asyncio.timeout(120):
            async for message in call:
                seen += message.HasField("frame")
                if seen >= count:
                    break
        call.cancel()


def test_a_detector_whose_sources_went_idle_returns_the_models_memory() -> None:
    env = {"VIGIL_DETECTOR_BACKEND": "yolo", "VIGIL_DETECTOR_MODEL_IDLE_S": "1"}
    with spawn.processes(("detector",), env=env) as services:
        pid = services.pids["detector"]
        asyncio.run(stream_frames(services.detector, 20))
        streaming = rss_mb(pid)
        # Linger (0.5 s), then the model's idle time (1 s), and the memory goes back.
        deadline = time.monotonic() + 60
        while rss_mb(pid) > streaming - RETURNED_MB and time.monotonic() < deadline:
            time.sleep(0.2)
        idle = rss_mb(pid)
        assert idle <= streaming - RETURNED_MB, (streaming, idle)
        # And it streams again, the model reloaded.
        asyncio.run(stream_frames(services.detector, 5))


def test_a_released_model_reloads_and_finds_the_same(tmp_path: pathlib.Path) -> None:
    backend = DarknetYoloBackend(DetectorSettings(data_dir=tmp_path))
    released = threading.Event()
    batcher = InferenceBatcher(backend, release_after_s=0.1, on_release=released.set)
    try:
        image = people_scene()
        before, _ = batcher.detect(image)
        assert before.to_proto([]), "the scene's people are found"
        assert released.wait(30), "the idle model was not released"
        after, _ = batcher.detect(image)
        assert after.to_proto([]) == before.to_proto([])
    finally:
        batcher.close()
