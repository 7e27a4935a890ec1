"""What one live frame costs in the detector service, stage by stage, on one core.

The stages are timed inside the service (``detector_service.benchmarks.stages``, run as a child
process): capture (rendering the test pattern, and decoding a 720p camera JPEG), inference (the
offline model, batch 1 and batch 4 per frame), drawing, JPEG encoding, and fan-out per subscriber
(queueing plus building and serialising the subscriber's message). The maximum frames per
second of one source on one core is given twice: as the sum of the stages, and measured end to end
on the real service (a detector process pinned to one CPU, its test-pattern source uncapped, one
subscriber on another CPU). The headline ``ratio`` is the measured figure over the 15 fps target.
"""

from __future__ import annotations

import time
from typing import Any

from vigil.bench.child import run_module

TARGET_FPS = 15.0
# The most a source may ask for; well above what one core reaches with a real model.
UNCAPPED_FPS = 120.0


def measured_fps(seconds: float, warmup_s: float = 2.0) -> float:
    """Frames per second one uncapped test-pattern source delivers through the offline model to
    one subscriber, with the detector service's process pinned to one CPU."""
    from vigil.loadgen import spawn
    from vigil.sdk import DetectorClient, Frame

    env = {"VIGIL_DETECTOR_BACKEND": "yolo"}
    with (
        spawn.processes(("detector",), env=env, cpu=0) as services,
        DetectorClient(services.detector) as detector,
    ):
        source_id = "bench-pipeline"
        detector.add_source(source_id, "test_pattern", max_fps=UNCAPPED_FPS)
        started = time.monotonic()
        at, frames = 0.0, -1  # counting starts with the first frame after the warm-up
        with detector.subscribe(source_id, omit_jpeg=True) as stream:
            for item in stream:
                if not isinstance(item, Frame):
                    continue
                now = time.monotonic()
                if frames < 0 and now - started >= warmup_s:
                    at, frames = now, 0
                elif frames >= 0:
                    frames += 1
                    if now - at >= seconds:
                        return frames / (now - at)
    raise RuntimeError("the source's stream ended")


def run(options: dict[str, Any]) -> dict[str, Any]:
    stages = run_module(
        "detector_service.benchmarks.stages", {"repeat": int(options.get("repeat", 30))}
    )
    measured = measured_fps(float(options.get("seconds", 10.0)))
    return {
        "name": "pipeline",
        **stages,
        "max_fps_one_source_one_core_measured": round(measured, 1),
        "baseline": f"{TARGET_FPS:.0f} fps target",
        "ratio": round(measured / TARGET_FPS, 2),
    }
