"""An analysis by a real model (vLLM on a tiny random Gemma 3, in process): the exact event
sequence and the frames the model is shown.

The model's words are random; the tests hold the structure.
"""

from __future__ import annotations

import asyncio
import pathlib
import re

import pytest

from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from tests.analyzer_service.helpers import (
    StartServer,
    connect,
    events_of,
    kinds,
    steps,
    upload,
    write_mp4v,
)
from tests.analyzer_service.model.support import Recording
from tests.llm import (
    MAX_IMAGES,
    SERVED_NAME,
    SharedEngine,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.devtools import tiny_gemma3

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


async def test_analysis_with_the_model_has_the_exact_event_sequence(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    onnx_detector: DetectorServer,
    knife_video: bytes,
) -> None:
    engine = Recording(llm_engine)
    custom = model_settings.model_copy(
        update={"detector_address": f"127.0.0.1:{onnx_detector.port}"}
    )
    server = await start_server(custom, engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, knife_video, name="knife.mp4")).job.id
        events = await events_of(stub, job_id)
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job

    # The budget: at most MAX_IMAGES frames a prompt, so 4 frames, 16 candidates scanned.
    expected = [
        ("progress", pb.STAGE_INITIALIZING, 10, r"Starting video analysis\.\.\."),
        ("progress", pb.STAGE_EXTRACTING_FRAMES, 25, r"Extracting frames from video\.\.\."),
        ("progress", pb.STAGE_EXTRACTING_FRAMES, 35, r"Scanned 16 moments .*"),
        ("progress", pb.STAGE_DETECTING, 40, r"Looking for weapons and people in 16 frames\.\.\."),
        ("progress", pb.STAGE_DETECTING, 45, r"Weapon seen: knife between .*"),
        ("progress", pb.STAGE_EXTRACTING_FRAMES, 50, r"Extracted \d+ frames \(0\.1 min\)"),
        ("progress", pb.STAGE_INFERENCE, 75, rf"{SERVED_NAME} analyzing {MAX_IMAGES} frames\.\.\."),
        ("thinking", None, None, rf"{SERVED_NAME} is reading {MAX_IMAGES} frames"),
        ("progress", pb.STAGE_COMPLETE, 100, r"Analysis complete in \d+\.\ds!"),
        ("complete", None, None, None),
    ]
    assert [e.sequence for e in events] == list(range(1, len(expected) + 1))
    for event, (kind, stage, percent, message) in zip(events, expected, strict=True):
        assert event.WhichOneof("event") == kind, event
        if kind == "progress":
            assert (event.progress.stage, event.progress.percent) == (stage, percent)
        if kind == "thinking":
            assert event.thinking.frame_count == MAX_IMAGES
        if message is not None:
            text = event.progress.message if kind == "progress" else event.thinking.message
            assert re.fullmatch(message, text), text

    result = events[-1].complete.result
    assert result.summary.strip()
    assert result.model == SERVED_NAME
    assert result.timings.inference_s > 0
    assert result.timings.detection_s > 0
    assert result.timings.total_s >= result.timings.inference_s
    assert events[-1].complete.timings == result.timings
    assert job.state == pb.JOB_STATE_SUCCEEDED
    assert job.result == result
    (knife,) = [e for e in result.timeline if e.description.startswith("knife seen")]
    assert knife.frame_times_s

    # What the model was given: one image block per frame shown, each after its time label, in
    # time order, and the detector's timeline as text.
    (request,) = engine.requests
    shown = sorted(result.frames, key=lambda f: f.time_s)
    assert len(request.images) == MAX_IMAGES
    assert len(result.frames) >= MAX_IMAGES
    assert list(request.labels) == sorted(request.labels)
    assert all(re.fullmatch(r"\[\d\d:\d\d\]", label) for label in request.labels)
    assert "knife seen (weapon" in request.prompt
    prepared = await llm_engine.prepare(request)
    assert prepared.text.count(tiny_gemma3.BOI) == MAX_IMAGES
    for label in request.labels:
        assert f"{label}{tiny_gemma3.BOI}" in prepared.text
    assert shown[0].time_s <= 2.0 < shown[-1].time_s


async def test_a_90_fps_720p_clip_is_analysed(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    videos: pathlib.Path,
) -> None:
    path = videos / "fast.mp4"
    await asyncio.to_thread(write_mp4v, path, seconds=1.5, fps=90, width=1280, height=720)
    server = await start_server(model_settings, engine=llm_engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        response = await upload(
            stub, path.read_bytes(), options=pb.AnalysisOptions(skip_detection=True)
        )
        events = await events_of(stub, response.job.id)
    video = response.video
    assert (video.width, video.height, video.fps, video.frame_count) == (1280, 720, 90.0, 135)
    assert kinds(events)[-1] == "complete"
    assert [p for _, p, _ in steps(events)] == [10, 25, 35, 50, 75, 100]
    result = events[-1].complete.result
    assert len(result.frames) == MAX_IMAGES
    assert result.summary
