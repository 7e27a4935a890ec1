"""Chat with a real model: streamed answers, the conversation kept and replayed as turns, and
chat refused before the frames are sampled.
"""

from __future__ import annotations

import grpc
import pytest

from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    StartServer,
    connect,
    events_of,
    upload,
)
from tests.analyzer_service.model.support import CHAT_TOKENS, Analysed, Recording, chat_request
from tests.llm import (
    MAX_IMAGES,
    SharedEngine,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.devtools import tiny_gemma3

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


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
    request = await chat_request(analysed, third_q, Recording(llm_engine))
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
