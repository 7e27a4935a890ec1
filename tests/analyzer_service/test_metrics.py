"""The analyzer's Prometheus metrics, scraped over HTTP from a real server on a free port.

An analysis moves the job gauges, the finished-job counter and the stage histograms; a chat
counts by outcome; a refusal counts by the code the caller saw; the engine's time to first token
and decode rate are observed for summaries and chat answers.
"""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    connect,
    events_of,
    upload,
    wait_for_event,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

FEW = pb.AnalysisOptions(
    sampling_policy=pb.SAMPLING_POLICY_UNIFORM, max_frames=2, skip_detection=True
)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


async def scrape(server: AnalyzerServer) -> Samples:
    assert server.metrics_port is not None
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.metrics_port}/metrics")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def with_metrics(settings: AnalyzerSettings) -> AnalyzerSettings:
    return settings.model_copy(update={"metrics_port": 0})


async def test_an_analysis_a_refusal_and_a_chat_without_a_model_are_counted(
    start_server: StartServer, with_metrics: AnalyzerSettings, short_bytes: bytes
) -> None:
    server = await start_server(with_metrics)
    before = await scrape(server)
    assert value(before, "vigil_analyzer_jobs", state="queued") == 0
    assert value(before, "vigil_analyzer_jobs", state="running") == 0
    assert value(before, "vigil_analyzer_queue_length") == 0
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=FEW)).job.id
        assert (await events_of(stub, job_id))[-1].HasField("complete")
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetJob(pb.GetJobRequest(job_id="no-such-job"))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(pb.ChatRequest(job_id=job_id, question="Who?")).read()
    after = await scrape(server)
    assert value(after, "vigil_analyzer_jobs_finished_total", state="succeeded") == 1
    assert value(after, "vigil_analyzer_jobs", state="running") == 0
    for stage in ("upload", "probe", "sampling", "total"):
        assert value(after, "vigil_analyzer_stage_seconds_count", stage=stage) == 1, stage
    # No model ran, and no detection pass: those stages are not observed at all.
    assert value(after, "vigil_analyzer_stage_seconds_count", stage="model") is None
    assert value(after, "vigil_analyzer_refusals_total", code="NOT_FOUND") == 1
    assert value(after, "vigil_analyzer_refusals_total", code="MODEL_NOT_CONFIGURED") == 1
    assert value(after, "vigil_analyzer_chat_requests_total", outcome="refused") == 1


async def test_queued_and_running_jobs_and_the_engine_are_measured(
    start_server: StartServer, with_metrics: AnalyzerSettings, short_bytes: bytes
) -> None:
    engine = FakeEngine(block=True, chat_text="Someone enters at [00:01] and leaves.")
    server = await start_server(with_metrics, engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        first = (await upload(stub, short_bytes, options=FEW)).job.id
        await wait_for_event(stub, first, "thinking")  # held in the model
        second = (await upload(stub, short_bytes, options=FEW)).job.id
        held = await scrape(server)
        assert value(held, "vigil_analyzer_jobs", state="running") == 1
        assert value(held, "vigil_analyzer_jobs", state="queued") == 1
        assert value(held, "vigil_analyzer_queue_length") == 1
        engine.release()
        for job_id in (first, second):
            assert (await events_of(stub, job_id))[-1].HasField("complete")
        answer = [r async for r in stub.Chat(pb.ChatRequest(job_id=first, question="Who?"))]
        assert answer[-1].done
    after = await scrape(server)
    assert value(after, "vigil_analyzer_jobs_finished_total", state="succeeded") == 2
    assert value(after, "vigil_analyzer_queue_length") == 0
    assert value(after, "vigil_analyzer_stage_seconds_count", stage="model") == 2
    assert value(after, "vigil_analyzer_engine_ttft_seconds_count", kind="summary") == 2
    assert value(after, "vigil_analyzer_engine_ttft_seconds_count", kind="chat") == 1
    assert value(after, "vigil_analyzer_engine_tokens_per_second_count", kind="chat") == 1
    assert value(after, "vigil_analyzer_chat_requests_total", outcome="ok") == 1
