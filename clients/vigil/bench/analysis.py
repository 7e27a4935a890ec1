"""Wall time of a whole analysis of a 120-minute 720p video: upload, probe, sampling, the detection
pass, the language model, with the analyzer configured as the caller's ``VIGIL_ANALYZER_*``
settings say.

On a GPU machine, ``VIGIL_ANALYZER_ENGINE=vllm VIGIL_ANALYZER_MODEL=google/gemma-3-4b-it`` (weights
in the Hugging Face cache) gives the time with Gemma 3 4B; with no engine configured (the
default) the analysis runs to its end without a model and the figure is everything but inference.
The video is the ``sampling`` benchmark's cached 120-minute file; the detector service (the
offline model unless ``VIGIL_DETECTOR_*`` says otherwise) serves the detection pass. Both
services are processes of their own, started as ``vigil run`` starts them. The headline
``ratio`` is the video's length over the analysis' wall time (times real time).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from typing import Any

# An engine loading a real model reports NOT_SERVING until it has loaded.
READY_TIMEOUT_S = 900.0


async def _analyse(address: str, path: pathlib.Path) -> dict[str, Any]:
    from vigil.sdk import AsyncAnalyzerClient, ClientOptions

    # No deadline on the upload: a 2-hour file takes a while on a loaded machine.
    async with AsyncAnalyzerClient(ClientOptions(address, timeout_s=None)) as analyzer:
        started = time.monotonic()
        uploaded = await analyzer.upload_video(path, start_analysis=True)
        upload_s = time.monotonic() - started
        assert uploaded.job is not None
        async for event in analyzer.events(uploaded.job.id):
            if event.kind == "error":
                raise RuntimeError(f"the analysis failed: {event.message}")
            if event.kind == "complete" and event.result is not None:
                wall_s = time.monotonic() - started
                result = event.result
                break
        else:
            raise RuntimeError("the event stream ended without an outcome")
    t = result.timings
    return {
        "duration_s": uploaded.video.duration_s,
        "upload_mb": round(uploaded.video.size / 1e6, 1),
        "upload_s": round(upload_s, 2),
        "probe_s": round(t.probe_s, 2),
        "sampling_s": round(t.sampling_s, 2),
        "detection_s": round(t.detection_s, 2),
        "inference_s": round(t.inference_s, 2),
        "analysis_total_s": round(t.total_s, 2),
        "wall_s_upload_to_complete": round(wall_s, 2),
        "frames_used": len(result.frames),
        "timeline_events": len(result.timeline),
        "model": result.model or "none (no engine configured)",
        "summary_chars": len(result.summary),
    }


def _settings(minutes: int) -> dict[str, str]:
    """The caller's VIGIL_* settings (engine, model, ...), but for what the benchmark needs."""
    return {
        "VIGIL_DETECTOR_BACKEND": os.environ.get("VIGIL_DETECTOR_BACKEND", "yolo"),
        "VIGIL_ANALYZER_MAX_DURATION_S": str(max(7200.0, minutes * 60.0)),
        # The service's own default, not the load generator's single worker.
        "VIGIL_ANALYZER_MEDIA_WORKERS": os.environ.get("VIGIL_ANALYZER_MEDIA_WORKERS", "2"),
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    from vigil.bench import sampling
    from vigil.loadgen import spawn

    minutes = int(options.get("minutes", 120))
    path = sampling.video(minutes)
    services = ("detector", "analyzer")
    env = _settings(minutes)
    with spawn.processes(services, env=env, ready_timeout_s=READY_TIMEOUT_S) as running:
        figures = asyncio.run(_analyse(running.analyzer, path))
    return {
        "name": "analysis",
        "engine": os.environ.get("VIGIL_ANALYZER_ENGINE", "none"),
        **figures,
        "baseline": "the video's own length",
        "ratio": round(figures["duration_s"] / figures["wall_s_upload_to_complete"], 1),
    }
