"""Aborts with a real model: a caller going away, a deadline or a cancelled job stops the
generation in the engine, counted by the tokens vLLM really generated.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from analyzer_service.engine import GenerateRequest
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    StartServer,
    connect,
    events_of,
    upload,
    wait_for_event,
)
from tests.analyzer_service.model.support import (
    Analysed,
    Recording,
    assert_cut_short,
    long_question,
)
from tests.llm import (
    MAX_MODEL_LEN,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


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
