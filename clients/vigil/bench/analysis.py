"""Wall time of a whole analysis of a 120-minute 720p video: upload, probe, sampling, the detection
pass, the language model, with the analyzer configured as the caller's ``VIGIL_ANALYZER_*``
settings say.

On a GPU machine, ``VIGIL_ANALYZER_ENGINE=vllm VIGIL_ANALYZER_MODEL=google/gemma-3-4b-it`` (weights
in the Hugging Face cache) gives the time with Gemma 3 4B; with no engine configured (the
default) the analysis runs to its end without a model and the figure is everything but inference.
The video is the ``sampling`` benchmark's cached 120-minute file; the detector service (its own
process, the offline model unless ``VIGIL_DETECTOR_*`` says otherwise) serves the detection pass.
The headline ``ratio`` is the video's length over the analysis' wall time (times real time).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any


async def _chunks(path: pathlib.Path) -> AsyncIterator[bytes]:
    from vigil.core.upload_protocol import CHUNK_BYTES

    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk


async def _analyse(address: str, path: pathlib.Path, size: int) -> dict[str, Any]:
    import grpc

    from vigil.analyzer.v1 import analyzer_service_pb2 as apb
    from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
    from vigil.core import upload_protocol

    header = apb.UploadHeader(name=path.name, size=size, start_analysis=True)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = apb_grpc.AnalyzerServiceStub(channel)
        started = time.monotonic()
        uploaded = await upload_protocol.send(stub.UploadVideo(None), header, _chunks(path))
        upload_s = time.monotonic() - started
        request = apb.StreamAnalysisEventsRequest(job_id=uploaded.job.id)
        async for event in stub.StreamAnalysisEvents(request):
            kind = event.WhichOneof("event")
            if kind == "error":
                raise RuntimeError(f"the analysis failed: {event.error.message}")
            if kind == "complete":
                wall_s = time.monotonic() - started
                result = event.complete.result
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


def _detector_env() -> dict[str, str]:
    return {"VIGIL_DETECTOR_BACKEND": os.environ.get("VIGIL_DETECTOR_BACKEND", "yolo")}


def run(options: dict[str, Any]) -> dict[str, Any]:
    from analyzer_service.server import serve
    from analyzer_service.settings import AnalyzerSettings
    from vigil.bench import sampling
    from vigil.loadgen import spawn

    minutes = int(options.get("minutes", 120))
    path = sampling.video(minutes)
    with (
        tempfile.TemporaryDirectory(prefix="vigil-bench-analysis-") as tmp,
        spawn.processes(("detector",), env=_detector_env()) as services,
    ):
        # Everything else from the caller's VIGIL_ANALYZER_* environment (engine, model, ...).
        settings = AnalyzerSettings(
            port=0,
            data_dir=pathlib.Path(tmp),
            detector_address=services.detector,
            max_duration_s=max(7200.0, minutes * 60.0),
        )

        async def measure() -> dict[str, Any]:
            # One loop owns the server and any in-process engine from start to stop.
            server = await serve(settings)
            try:
                return await _analyse(f"127.0.0.1:{server.port}", path, path.stat().st_size)
            finally:
                await server.stop(0)

        figures = asyncio.run(measure())
    return {
        "name": "analysis",
        "engine": settings.engine,
        **figures,
        "baseline": "the video's own length",
        "ratio": round(figures["duration_s"] / figures["wall_s_upload_to_complete"], 1),
    }
