"""The analyzer with a real language model: vLLM on a tiny random Gemma 3, in process (the
session's one engine) and as vLLM's own OpenAI server (a subprocess on 127.0.0.1).

The model's words are random; the tests hold the structure: the exact event sequence, one labelled
image block per frame in the prompt, token counts, streaming, history, aborts and engine death.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import re
import signal
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from analyzer_service.engine import Engine, GenerateRequest
from vigil.devtools import tiny_gemma3
from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.analyzer_service.helpers import (
    StartServer,
    Stub,
    connect,
    events_of,
    kinds,
    steps,
    upload,
    wait_for_event,
    write_mp4v,
    write_scenes,
)
from tests.conftest import kill_server
from tests.detector_service.backends.test_onnx import build_model
from tests.llm import (
    API_KEY,
    MAX_IMAGES,
    MAX_MODEL_LEN,
    SERVED_NAME,
    ServerProcess,
    SharedEngine,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BLACK, RED = (0, 0, 0), (0, 0, 255)
SUMMARY_TOKENS = 24
CHAT_TOKENS = 12


class Recording:
    """The shared engine as the analyzer sees it, remembering every request it is given."""

    def __init__(self, inner: SharedEngine) -> None:
        self.inner = inner
        self.model = inner.model
        self.max_model_len = inner.max_model_len
        self.max_images = inner.max_images
        self.tokens_per_image = inner.tokens_per_image
        self.accepts_images = inner.accepts_images
        self.requests: list[GenerateRequest] = []

    def generate(self, request: GenerateRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        return self.inner.generate(request)

    def deltas(self, request: GenerateRequest) -> AsyncIterator[object]:
        self.requests.append(request)
        return self.inner.deltas(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    async def health(self) -> bool:
        return await self.inner.health()


@pytest.fixture
def model_settings(settings: AnalyzerSettings) -> AnalyzerSettings:
    return settings.model_copy(
        update={
            "max_tokens": SUMMARY_TOKENS,
            "chat_max_tokens": CHAT_TOKENS,
            "engine_health_interval_s": 0.5,
        }
    )


@pytest.fixture
async def onnx_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    """A real detector service whose tiny ONNX model sees a knife in red frames."""
    model = build_model(tmp_path / "colours.onnx", names=repr({0: "knife", 1: "person", 2: "car"}))
    server = await serve_detector(
        DetectorSettings(
            port=0,
            backend="onnx",
            onnx_model_path=model,
            confidence=0.4,
            data_dir=tmp_path / "detector",
        )
    )
    yield server
    await server.stop(0)


@pytest.fixture(scope="session")
def knife_video(videos: pathlib.Path) -> bytes:
    """6 s at 10 fps: black, a knife (red) from 2 s to 4 s, black again."""
    path = videos / "knife.mp4"
    write_scenes(path, [(2.0, BLACK), (2.0, RED), (2.0, BLACK)], fps=10)
    return path.read_bytes()


@dataclasses.dataclass
class Analysed:
    server: AnalyzerServer
    stub: Stub
    job_id: str
    events: list[pb.StreamAnalysisEventsResponse]


@contextlib.asynccontextmanager
async def analyse(
    start_server: StartServer, settings: AnalyzerSettings, engine: Engine, video: bytes
) -> AsyncIterator[Analysed]:
    """A server on ``engine`` and a finished analysis of ``video`` (no detector: quicker)."""
    server = await start_server(settings, engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        options = pb.AnalysisOptions(skip_detection=True)
        job_id = (await upload(stub, video, options=options)).job.id
        events = await events_of(stub, job_id)
        assert kinds(events)[-1] == "complete", events[-1]
        yield Analysed(server, stub, job_id, events)


@pytest.fixture
async def analysed(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    knife_video: bytes,
) -> AsyncIterator[Analysed]:
    """A finished analysis of the knife video by the real model."""
    async with analyse(start_server, model_settings, llm_engine, knife_video) as done:
        yield done


@pytest.fixture
def long_engine(llm_engine: SharedEngine) -> Recording:
    """The session's engine allowing answers as long as the context, recording its requests."""
    return Recording(llm_engine.capped_at(MAX_MODEL_LEN))


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


async def test_chat_streams_an_answer_and_keeps_the_conversation(
    analysed: Analysed, llm_engine: SharedEngine
) -> None:
    stub = analysed.stub
    store = analysed.server.jobs.store  # it keeps the conversation
    first_q = "What happens in the video?"
    responses = [
        r async for r in stub.Chat(pb.ChatRequest(job_id=analysed.job_id, question=first_q))
    ]
    *deltas, final = responses
    assert len(deltas) >= 2
    assert not any(r.done for r in deltas)
    assert final.done
    assert final.text == "".join(r.delta for r in deltas)
    # <eos> is ignored: the answer is exactly as long as the service's default for chat.
    assert final.completion_tokens == CHAT_TOKENS
    counts = [r.completion_tokens for r in deltas]
    assert counts == sorted(counts)
    assert counts[-1] <= CHAT_TOKENS
    assert all(0 <= t <= 6.0 + 1 for t in final.cited_times_s)  # within the 6 s video

    # A second question, with a smaller max_tokens: its prompt carries the first turn.
    second_q = "And who was there at [00:03]?"
    second = [
        r
        async for r in stub.Chat(
            pb.ChatRequest(job_id=analysed.job_id, question=second_q, max_tokens=5)
        )
    ]
    assert second[-1].done
    assert second[-1].completion_tokens == 5
    turns = await store.chat_turns(analysed.job_id)
    assert [(t.question, t.answer) for t in turns] == [
        (first_q, final.text),
        (second_q, second[-1].text),
    ]
    assert turns[0].completion_tokens == CHAT_TOKENS
    assert list(turns[0].cited_times_s) == list(final.cited_times_s)
    # The real engine's first tokens and decode rate are measured, for the summary and each answer.
    metrics = analysed.server.metrics.registry
    ttft = "vigil_analyzer_engine_ttft_seconds_count"
    assert metrics.get_sample_value(ttft, {"kind": "summary"}) == 1
    assert metrics.get_sample_value(ttft, {"kind": "chat"}) == 2
    rate = "vigil_analyzer_engine_tokens_per_second_count"
    assert metrics.get_sample_value(rate, {"kind": "chat"}) == 2
    assert metrics.get_sample_value("vigil_analyzer_chat_requests_total", {"outcome": "ok"}) == 2

    # The prompt of a third question, as the engine renders it: the frames once (with the first
    # question), the earlier questions and answers as turns of their own, then the question.
    third_q = "Anything else?"
    request = await _chat_request(analysed, third_q, Recording(llm_engine))
    assert len(request.history) == 2
    assert request.history[0][0].endswith(f"Question: {first_q}")
    assert request.history[0][1] == final.text
    assert request.history[1] == (second_q, second[-1].text)
    assert request.prompt == third_q
    prepared = await llm_engine.prepare(request)
    text = prepared.text
    assert text.count(tiny_gemma3.BOI) == MAX_IMAGES
    assert text.count("<start_of_turn>user") == 3
    assert text.count("<start_of_turn>model") == 3  # two answers, and the one to come
    position = text.rindex(tiny_gemma3.BOI)  # the images come first
    for part in (first_q, final.text, second_q, second[-1].text, third_q):
        position = text.index(part.strip(), position) + len(part.strip())
    await llm_engine.wait_idle()


async def _chat_request(analysed: Analysed, question: str, engine: Recording) -> GenerateRequest:
    """The request the service's chat would send for ``question`` now."""
    from analyzer_service.chat import Chat

    jobs = analysed.server.jobs
    chat = Chat(
        settings=analysed.server.settings,
        store=jobs.store,
        engine=engine,
        monitor=None,
        pipeline=jobs.pipeline,
    )
    job = await jobs.get(analysed.job_id)
    return await chat.request(job, question, 4)


@pytest.fixture
async def long_chat(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    long_engine: Recording,
    knife_video: bytes,
) -> AsyncIterator[Analysed]:
    """A finished analysis whose chat answers may fill the context (<eos> ignored): only an
    abort can end one early."""
    custom = model_settings.model_copy(update={"chat_max_tokens": MAX_MODEL_LEN})
    async with analyse(start_server, custom, long_engine, knife_video) as analysed:
        yield analysed


def long_question(analysed: Analysed) -> pb.ChatRequest:
    return pb.ChatRequest(
        job_id=analysed.job_id, question="Describe it all.", max_tokens=MAX_MODEL_LEN
    )


async def assert_cut_short(engine: SharedEngine, request: GenerateRequest, generated: int) -> None:
    """``generated`` tokens are far fewer than ``request`` makes when nothing stops it."""
    unaborted = await engine.full_length(request)
    assert unaborted > 1000, "the prompt leaves too little room for a long answer"
    assert generated < unaborted, (generated, unaborted)


async def test_a_caller_going_away_aborts_the_answer(
    long_chat: Analysed, long_engine: Recording
) -> None:
    engine = long_engine.inner
    before = await engine.settled_tokens()
    call = long_chat.stub.Chat(long_question(long_chat))
    received = 0
    async for response in call:
        assert not response.done
        received += 1
        if received == 3:
            break
    assert await engine.unfinished_requests() == 1
    call.cancel()
    generated = await engine.settled_tokens() - before
    assert generated >= 3
    await assert_cut_short(engine, long_engine.requests[-1], generated)
    # Nothing half-said is kept.
    assert await long_chat.server.jobs.store.chat_turns(long_chat.job_id) == []


async def test_a_chat_deadline_stops_the_generation(
    long_chat: Analysed, long_engine: Recording
) -> None:
    engine = long_engine.inner
    reached: list[GenerateRequest] = []
    for timeout in (0.001, 1.0):
        before, asked = await engine.settled_tokens(), len(long_engine.requests)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in long_chat.stub.Chat(long_question(long_chat), timeout=timeout):
                pass
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The engine stops too: idle again, far short of the answer nothing stopped.
        generated = await engine.settled_tokens() - before
        for request in long_engine.requests[asked:]:
            reached.append(request)
            await assert_cut_short(engine, request, generated)
        assert await long_chat.server.jobs.store.chat_turns(long_chat.job_id) == []
    # 1 s is long enough for a question to reach the engine: the check above ran.
    assert reached


async def test_cancelling_a_job_aborts_its_generation(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    long_engine: Recording,
    knife_video: bytes,
) -> None:
    engine = long_engine.inner
    # A summary that may fill the context (<eos> ignored): only the abort can end it early. One
    # frame keeps its prompt short (the budget counts max_tokens against the context).
    custom = model_settings.model_copy(update={"max_tokens": MAX_MODEL_LEN})
    server = await start_server(custom, engine=long_engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        before = await engine.settled_tokens()
        options = pb.AnalysisOptions(skip_detection=True)
        job_id = (await upload(stub, knife_video, options=options)).job.id
        await wait_for_event(stub, job_id, "thinking")
        # Mid-generation: the engine has produced tokens of this job's summary.
        deadline = asyncio.get_running_loop().time() + 60
        while engine.tokens.total - before < 3:
            assert asyncio.get_running_loop().time() < deadline, "the summary never started"
            await asyncio.sleep(0.02)
        cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))).job
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        generated = await engine.settled_tokens() - before
        (request,) = long_engine.requests
        assert request.request_id == job_id
        assert generated >= 3
        await assert_cut_short(engine, request, generated)
        events = await events_of(stub, job_id)
        assert events[-1].error.code == "CANCELLED"


async def test_chat_needs_sampled_frames_and_a_question(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    llm_engine: SharedEngine,
    short_bytes: bytes,
) -> None:
    server = await start_server(model_settings, engine=llm_engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        # The stored file goes missing: the job fails at 10%, before any frame is sampled.
        (model_settings.videos_dir / video.id).unlink()
        job = (await stub.StartAnalysis(pb.StartAnalysisRequest(video_id=video.id))).job
        assert (await events_of(stub, job.id))[-1].error.code == "VIDEO_MISSING"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Chat(pb.ChatRequest(job_id=job.id, question="Anything?")).read()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "FRAMES_NOT_READY" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await stub.Chat(pb.ChatRequest(job_id=job.id, question="  ")).read()
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def health_status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=2
    )
    return int(reply.status)


async def test_the_http_engine_made_from_settings_analyses_and_chats(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    vllm_server: str,
    knife_video: bytes,
) -> None:
    custom = model_settings.model_copy(
        update={
            "engine": "vllm-http",
            "vllm_url": vllm_server,
            "model": SERVED_NAME,
            "vllm_api_key": SecretStr(API_KEY),
            "max_images": MAX_IMAGES,
        }
    )
    server = await start_server(custom)
    assert isinstance(server.engine, RemoteVllmEngine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        options = pb.AnalysisOptions(skip_detection=True)
        job_id = (await upload(stub, knife_video, options=options)).job.id
        events = await events_of(stub, job_id)
        assert kinds(events)[-1] == "complete", events[-1]
        assert [p for _, p, _ in steps(events)] == [10, 25, 35, 50, 75, 100]
        result = events[-1].complete.result
        assert result.model == SERVED_NAME
        assert result.timings.inference_s > 0
        # The random model may stop at once (<eos> is not ignored here): only the shape holds.
        responses = [
            r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="What is seen?"))
        ]
        assert responses[-1].done
        assert responses[-1].text == "".join(r.delta for r in responses[:-1])
        assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.kills_vllm_server
async def test_engine_death_turns_the_service_unavailable(
    start_server: StartServer,
    model_settings: AnalyzerSettings,
    vllm_server: str,
    vllm_server_process: ServerProcess,
    knife_video: bytes,
) -> None:
    # Long answers (<eos> ignored; seconds of work), so the job is mid-generation when the server
    # dies; prompt and answer must fit in the server's 2048 tokens.
    engine = RemoteVllmEngine(
        vllm_server, SERVED_NAME, api_key=API_KEY, max_tokens=1000, extra_body={"ignore_eos": True}
    )
    custom = model_settings.model_copy(
        update={"max_tokens": 1000, "max_images": MAX_IMAGES, "max_model_len": 2048}
    )
    server = await start_server(custom, engine=engine)
    try:
        async with connect(server) as channel:
            stub = pb_grpc.AnalyzerServiceStub(channel)
            options = pb.AnalysisOptions(skip_detection=True)
            job_id = (await upload(stub, knife_video, options=options)).job.id
            await wait_for_event(stub, job_id, "thinking")
            assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
            # Frozen first, so the answer cannot finish between this check and the kill.
            os.killpg(vllm_server_process.process.pid, signal.SIGSTOP)
            job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
            assert job.state == pb.JOB_STATE_RUNNING, kinds(await events_of(stub, job_id))
            await asyncio.to_thread(kill_server, vllm_server_process.process, signal.SIGKILL)
            died = time.monotonic()

            while await health_status(channel) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() - died < 5, "still SERVING 5 s after the engine died"
                await asyncio.sleep(0.1)

            events = await asyncio.wait_for(events_of(stub, job_id), 10)
            assert events[-1].error.code == "UNAVAILABLE", kinds(events)
            assert events[-1].error.retryable
            job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
            assert job.state == pb.JOB_STATE_FAILED

            asked = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Chat(pb.ChatRequest(job_id=job_id, question="Still there?")).read()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - asked < 1.0
    finally:
        await engine.aclose()
