"""An analysis of a camera's recording by the real model: a live camera recorded by the real
detector service, a range of it fetched by the analyzer, analysed and asked about through the
SDK, as an upload would be.

The model's words are random (a tiny random Gemma 3); the tests hold the structure.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest

from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests import recorded
from tests.analyzer_service.helpers import StartServer
from tests.detector_service.backends.test_onnx import build_model
from tests.llm import SERVED_NAME, SharedEngine
from vigil.bench.rtsp import RtspCamera
from vigil.sdk import AnalysisOptions, AsyncAnalyzerClient, AsyncDetectorClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def gate_camera() -> Iterator[RtspCamera]:
    with recorded.camera() as camera:
        yield camera


@pytest.fixture
async def recording_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    """A real detector (the colours ONNX model) cutting its recordings into short segments."""
    model = build_model(tmp_path / "colours.onnx", names=repr({0: "knife", 1: "person", 2: "car"}))
    server = await serve_detector(
        DetectorSettings(
            port=0,
            backend="onnx",
            onnx_model_path=model,
            confidence=0.4,
            data_dir=tmp_path / "detector",
            recording_segment_s=recorded.SEGMENT_S,
        )
    )
    yield server
    await server.stop(0)


async def test_a_recorded_range_is_analysed_and_answered_like_an_upload(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    recording_detector: DetectorServer,
    gate_camera: RtspCamera,
) -> None:
    detector = f"127.0.0.1:{recording_detector.port}"
    start, end = await asyncio.to_thread(recorded.record, detector, gate_camera.url())
    server = await start_server(
        model_settings.model_copy(update={"detector_address": detector}), engine=llm_engine
    )
    async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
        job = await client.analyze_recording("gate", start, end, AnalysisOptions(max_frames=4))
        assert job.recording is not None
        assert job.recording.source_id == "gate"
        # What the video covers: it starts at the range's first keyframe (``start`` is one).
        assert job.recording.start == pytest.approx(start, abs=1e-6)
        assert start < job.recording.end <= end + 1e-6
        assert job.video is not None
        assert (job.video.width, job.video.height) == (320, 240)
        assert job.video.duration_s >= recorded.RECORDED_S - 1
        assert job.video.name.startswith("gate ")

        events = [event async for event in client.events(job.id)]
        assert [e.kind for e in events][-1] == "complete", events[-1]
        stages = [e.stage for e in events if e.kind == "progress"]
        assert {"initializing", "extracting_frames", "detecting", "inference"} <= set(stages)
        assert any(e.kind == "thinking" for e in events)

        done = await client.get_job(job.id)
        assert done.state == "succeeded"
        assert done.recording == job.recording
        assert done.result is not None
        assert done.result.summary.strip()
        assert done.result.model == SERVED_NAME
        assert done.result.frames

        async with client.chat(job.id, "What happened at the gate?") as answer:
            chunks = [chunk async for chunk in answer]
        assert chunks[-1].done
        assert chunks[-1].text.strip()

    # The video analysed is the detector's export of the range, byte for byte.
    async with AsyncDetectorClient(detector) as detector_client:
        exported = await detector_client.export("gate", start, end)
    assert job.video.size == len(exported.data)
    assert job.video.sha256 == hashlib.sha256(exported.data).hexdigest()
