"""The in-process engine as the service makes it from its settings (``VIGIL_ANALYZER_ENGINE=vllm``).

The loading test builds an engine of its own on the tiny model, next to the session's: a minute
or two and about 3 GB more, once.
"""

from __future__ import annotations

import pathlib

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from analyzer_service.engine import EngineLimits
from analyzer_service.engines import catalog
from analyzer_service.engines.vllm_local import LocalVllmEngine
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import StartServer, connect, events_of, kinds, upload
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

NAME = "tiny-from-settings"


def tiny_settings(settings: AnalyzerSettings, model: pathlib.Path) -> AnalyzerSettings:
    return settings.model_copy(
        update={
            "engine": "vllm",
            "model": str(model),
            "served_model_name": NAME,
            "dtype": "bfloat16",
            "max_model_len": 2048,
            "max_images": 2,
            "max_tokens": 8,
            "chat_max_tokens": 6,
            "temperature": 0.7,
            "top_p": 0.9,
        }
    )


def test_settings_map_to_the_engine(settings: AnalyzerSettings, tiny_gemma: pathlib.Path) -> None:
    engine = catalog.create(tiny_settings(settings, tiny_gemma))
    assert isinstance(engine, LocalVllmEngine)
    assert (engine.model, engine.model_path) == (NAME, str(tiny_gemma))
    assert (engine.dtype, engine.max_model_len, engine.max_images) == ("bfloat16", 2048, 2)
    # One cap for both kinds of answer: the longer of the two.
    assert engine.max_tokens == 8
    assert (engine.temperature, engine.top_p) == (0.7, 0.9)
    # Not loaded until the service starts it.
    assert engine.limits == EngineLimits(max_model_len=2048, max_images=2)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_the_engine_made_from_settings_analyses_and_chats(
    start_server: StartServer,
    settings: AnalyzerSettings,
    tiny_gemma: pathlib.Path,
    short_bytes: bytes,
) -> None:
    server = await start_server(tiny_settings(settings, tiny_gemma))
    engine = server.engine
    assert isinstance(engine, LocalVllmEngine)
    assert server.owns_engine
    assert engine.limits.accepts_images
    assert engine.limits.tokens_per_image is not None
    async with connect(server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.AnalyzerServiceStub(channel)
        options = pb.AnalysisOptions(skip_detection=True)
        job_id = (await upload(stub, short_bytes, options=options)).job.id
        events = await events_of(stub, job_id)
        assert kinds(events)[-1] == "complete", events[-1]
        # The settings' limit on images per prompt is the engine's.
        (thinking,) = [e.thinking for e in events if e.HasField("thinking")]
        assert thinking.frame_count == 2
        assert thinking.message == f"{NAME} is reading 2 frames"
        result = events[-1].complete.result
        assert result.model == NAME
        assert result.timings.inference_s > 0
        # The random model may stop at once (<eos> is not ignored here): only the shape holds.
        answer = [r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="Who?"))]
        assert answer[-1].done
        assert answer[-1].completion_tokens <= 6
        assert answer[-1].text == "".join(r.delta for r in answer[:-1])
    # The server made the engine, so stopping it shuts the engine down.
    await server.stop(0)
    assert not await engine.health()
