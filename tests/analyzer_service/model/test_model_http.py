"""The analyzer on vLLM's own OpenAI server (a subprocess on 127.0.0.1): made from the settings,
and what happens when that server dies mid-generation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from pydantic import SecretStr

from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    StartServer,
    connect,
    events_of,
    kinds,
    steps,
    upload,
    wait_for_event,
)
from tests.analyzer_service.model.support import health_status
from tests.conftest import kill_server
from tests.llm import (
    API_KEY,
    MAX_IMAGES,
    SERVED_NAME,
    ServerProcess,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

# The first test's setup includes building the model and loading vLLM (minutes on a busy host).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


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
        await engine.close()
