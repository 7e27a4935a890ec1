"""What one live frame costs in the detector service, stage by stage, on one core.

``python -m detector_service.benchmarks.stages '{"repeat": 30}'`` prints the figures as JSON
(``vigil bench pipeline`` runs it and adds the end-to-end measurement). Stages: capture
(rendering the test pattern, and decoding a 720p camera JPEG), inference (the offline model,
batch 1 and batch 4 per frame), drawing, JPEG encoding, and fan-out per subscriber (queueing plus
building and serialising the subscriber's message); and the maximum frames per second of one
source on one core as the sum of the stages.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import cv2

from detector_service import backends
from detector_service.annotate import decode_image, draw, encode_jpeg
from detector_service.settings import DetectorSettings
from detector_service.subscribers import Processed, Subscriber
from detector_service.testpattern import TestPattern


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
    return {
        "model": model.model_name,
        "jpeg_bytes": len(camera_jpeg),
        **{k: round(v, 3) for k, v in stages.items()},
        "per_frame_one_subscriber_ms": round(per_frame, 2),
        "max_fps_one_source_one_core_sum_of_stages": round(1000 / per_frame, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
