"""What the tests of the analyzer with a real model share: the recording engine, a finished
analysis, and the checks that an answer was cut short."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from analyzer_service.chat import Chat
from analyzer_service.engine import (
    Delta,
    Engine,
    EngineLimits,
    EngineMonitor,
    GenerateRequest,
    Lifecycle,
)
from analyzer_service.generation import Model
from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    StartServer,
    Stub,
    connect,
    events_of,
    kinds,
    upload,
)
from tests.llm import (
    MAX_MODEL_LEN,
    SharedEngine,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

BLACK, RED = (0, 0, 0), (0, 0, 255)
SUMMARY_TOKENS = 24
CHAT_TOKENS = 12


class Recording(Lifecycle):
    """The shared engine as the analyzer sees it, remembering every request it is given."""

    def __init__(self, inner: SharedEngine) -> None:
        self.inner = inner
        self.model = inner.model
        self.requests: list[GenerateRequest] = []

    @property
    def limits(self) -> EngineLimits:
        return self.inner.limits

    def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        self.requests.append(request)
        return self.inner.deltas(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    async def health(self) -> bool:
        return await self.inner.health()


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


async def chat_request(analysed: Analysed, question: str, engine: Recording) -> GenerateRequest:
    """The request the service's chat would send for ``question`` now."""
    server = analysed.server
    jobs = server.jobs
    # Never started: chat only asks the model its limits here, it does not generate.
    monitor = EngineMonitor(engine, interval_s=1.0, timeout_s=1.0)
    model = Model(engine, settings=server.settings, monitor=monitor, metrics=server.metrics)
    chat = Chat(
        settings=server.settings, store=jobs.store, model=model, frames=jobs.pipeline.frames
    )
    job = await jobs.get(analysed.job_id)
    return await chat.request(job, question, 4)


def long_question(analysed: Analysed) -> pb.ChatRequest:
    return pb.ChatRequest(
        job_id=analysed.job_id, question="Describe it all.", max_tokens=MAX_MODEL_LEN
    )


async def assert_cut_short(engine: SharedEngine, request: GenerateRequest, generated: int) -> None:
    """``generated`` tokens are far fewer than ``request`` makes when nothing stops it."""
    unaborted = await engine.full_length(request)
    assert unaborted > 1000, "the prompt leaves too little room for a long answer"
    assert generated < unaborted, (generated, unaborted)


async def health_status(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=2
    )
    return int(reply.status)
