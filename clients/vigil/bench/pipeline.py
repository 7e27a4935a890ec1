"""What one live frame costs in the detector service, stage by stage, on one core.

Stages: capture (rendering the test pattern, and decoding a 720p camera JPEG), inference (the
offline model, batch 1 and batch 4 per frame), drawing, JPEG encoding, and fan-out per subscriber
(queueing plus building and serialising the subscriber's message). The maximum frames per
second of one source on one core is given twice: as the sum of the stages, and measured end to end
on the real service (a detector process pinned to one CPU, its test-pattern source uncapped, one
subscriber on another CPU). The headline ``ratio`` is the measured figure over the 15 fps target.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2

from detector_service import backends
from detector_service.annotate import decode_image, draw, encode_jpeg
from detector_service.settings import DetectorSettings
from detector_service.subscribers import Processed, Subscriber
from detector_service.testpattern import TestPattern

TARGET_FPS = 15.0
# The most a source may ask for; well above what one core reaches with a real model.
UNCAPPED_FPS = 120.0


def per_call_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def fanout_ms(jpeg: bytes, subscribers: int, repeat: int) -> float:
    async def measure() -> float:
        subs = [Subscriber(2, omit_jpeg=False) for _ in range(subscribers)]
        item = Processed(1, time.time_ns(), jpeg, 1280, 720, [], 0.0, None)

        def once() -> None:
            for sub in subs:
                sub.frames.put(item)
            for sub in subs:
                sub._frame(sub.frames._items.popleft()).SerializeToString()

        return per_call_ms(once, repeat) / subscribers

    return asyncio.run(measure())


def measured_fps(seconds: float, warmup_s: float = 2.0) -> float:
    """Frames per second one uncapped test-pattern source delivers through the offline model to
    one subscriber, with the detector service's process pinned to one CPU."""
    import grpc

    from vigil.core.channels import LIVE_CHANNEL_OPTIONS
    from vigil.detector.v1 import detector_service_pb2 as dpb
    from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
    from vigil.loadgen import spawn

    env = {"VIGIL_DETECTOR_BACKEND": "yolo"}
    with (
        spawn.processes(("detector",), env=env, cpu=0) as services,
        grpc.insecure_channel(services.detector, options=LIVE_CHANNEL_OPTIONS) as channel,
    ):
        stub = dpb_grpc.DetectorServiceStub(channel)
        spec = dpb.SourceSpec(
            id="bench-pipeline", kind=dpb.SOURCE_KIND_TEST_PATTERN, max_fps=UNCAPPED_FPS
        )
        stub.AddSource(dpb.AddSourceRequest(source=spec), timeout=10)
        # Leaving the channel's block cancels the stream.
        stream = stub.Subscribe(dpb.SubscribeRequest(source_id=spec.id, omit_jpeg=True))
        started = time.monotonic()
        at, frames = 0.0, -1  # counting starts with the first frame after the warm-up
        for _ in stream:
            now = time.monotonic()
            if frames < 0 and now - started >= warmup_s:
                at, frames = now, 0
            elif frames >= 0:
                frames += 1
                if now - at >= seconds:
                    return frames / (now - at)
    raise RuntimeError("the source's stream ended")


def run(options: dict[str, Any]) -> dict[str, Any]:
    repeat = int(options.get("repeat", 30))
    cv2.setNumThreads(1)  # one core, as the figure promises
    settings = DetectorSettings()
    pattern = TestPattern()
    frame = pattern.render(1)
    camera_jpeg = encode_jpeg(frame, 80)
    model = backends.create(settings)
    found = model.detect([frame])[0]
    stages = {
        "capture_test_pattern_ms": per_call_ms(lambda: pattern.render(2), repeat),
        "capture_decode_720p_jpeg_ms": per_call_ms(lambda: decode_image(camera_jpeg), repeat),
        "inference_ms": per_call_ms(lambda: model.detect([frame]), repeat),
        "inference_batch4_per_frame_ms": per_call_ms(
            lambda: model.detect([frame] * 4), max(1, repeat // 4)
        )
        / 4,
        "draw_ms": per_call_ms(lambda: draw(frame.copy(), found, settings.weapon_classes), repeat),
        "encode_jpeg_q80_ms": per_call_ms(lambda: encode_jpeg(frame, 80), repeat),
        "fanout_per_subscriber_ms": fanout_ms(camera_jpeg, 10, repeat),
    }
    per_frame = (
        stages["capture_decode_720p_jpeg_ms"]
        + stages["inference_ms"]
        + stages["draw_ms"]
        + stages["encode_jpeg_q80_ms"]
        + stages["fanout_per_subscriber_ms"]
    )
    max_fps = 1000 / per_frame
    measured = measured_fps(float(options.get("seconds", 10.0)))
    return {
        "name": "pipeline",
        "model": model.model_name,
        "jpeg_bytes": len(camera_jpeg),
        **{k: round(v, 3) for k, v in stages.items()},
        "per_frame_one_subscriber_ms": round(per_frame, 2),
        "max_fps_one_source_one_core_sum_of_stages": round(max_fps, 1),
        "max_fps_one_source_one_core_measured": round(measured, 1),
        "baseline": f"{TARGET_FPS:.0f} fps target",
        "ratio": round(measured / TARGET_FPS, 2),
    }
