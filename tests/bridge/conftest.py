"""Fixtures for the bridge: the bridge served by uvicorn in-process, real detector and analyzer
services (analyzers optionally with a scripted engine), a scripted fake detector for the hub's own
tests, and generated videos."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp

from analyzer_service.engine import Engine
from analyzer_service.server import AnalyzerServer
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.analyzer_service.helpers import write_h264
from tests.vigil.standin import ScriptedEngine
from vigil.core.errors import NotFound
from vigil.core.serving import Service
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.sdk import AsyncDetectorClient, ClientOptions

DETECTOR_SERVICE = dpb.DESCRIPTOR.services_by_name["DetectorService"].full_name


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningBridge:
    server: uvicorn.Server
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


StartBridge = Callable[..., Awaitable[RunningBridge]]


@pytest.fixture
async def start_bridge() -> AsyncIterator[StartBridge]:
    """Serve ``create_app`` with uvicorn on a free port, as ``python -m bridge`` would."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> RunningBridge:
        fields: dict[str, Any] = {
            "port": 0,
            "analyzer_address": f"127.0.0.1:{free_port()}",
            # Quick retries keep the outage tests within a few seconds.
            "retry_initial_s": 0.1,
            "retry_max_s": 0.5,
        }
        fields.update(overrides)
        settings = BridgeSettings(**fields)
        sock = listen(settings)
        # The test's own event loop runs the server, so no loop choice here.
        options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 2}
        server = uvicorn.Server(config(create_app(settings), settings, **options))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        running.append((server, task))
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        port: int = sock.getsockname()[1]
        return RunningBridge(server, port)

    yield start
    for server, _ in running:
        server.should_exit = True
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


@dataclass
class DetectorHandle:
    """A real detector service that tests may stop and start again on the same port."""

    server: DetectorServer | None
    port: int
    data_dir: pathlib.Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    async def restart(self) -> None:
        await self.stop()
        settings = DetectorSettings(port=self.port, backend="none", data_dir=self.data_dir)
        self.server = await serve(settings)


@pytest.fixture
async def detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorHandle]:
    # Its own data dir: sources the tests add are kept across restarts.
    data_dir = tmp_path / "detector"
    server = await serve(DetectorSettings(port=0, backend="none", data_dir=data_dir))
    handle = DetectorHandle(server, server.port, data_dir)
    yield handle
    await handle.stop()


class FakeDetector:
    """A scripted ``DetectorService.Subscribe``: source "cam" sends ``fps`` tiny frames a second;
    any other source is NOT_FOUND, as the real service answers."""

    def __init__(self, fps: float = 100.0) -> None:
        self.fps = fps
        self.active = 0  # Subscribe calls in progress
        self.calls = 0
        # The metadata each Subscribe call arrived with (the bridge's token rides there).
        self.metadata: list[dict[str, str]] = []
        self.service: Service | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def subscribe(
        self, request: dpb.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[dpb.SubscribeResponse]:
        self.calls += 1
        pairs = context.invocation_metadata() or ()
        self.metadata.append({str(key): str(value) for key, value in pairs})
        if request.source_id != "cam":
            # Raised, as the services do: the server's interceptor makes it a rich status.
            raise NotFound(f"no source {request.source_id!r}")
        self.active += 1
        try:
            yield dpb.SubscribeResponse(
                source=dpb.Source(spec=dpb.SourceSpec(id="cam"), state=dpb.SOURCE_STATE_LIVE)
            )
            sequence = 0
            while True:
                sequence += 1
                stamp = Timestamp()
                stamp.GetCurrentTime()
                yield dpb.SubscribeResponse(
                    frame=dpb.Frame(
                        source_id="cam",
                        sequence=sequence,
                        capture_time=stamp,
                        jpeg=b"\xff\xd8 fake jpeg %d \xff\xd9" % sequence,
                        width=64,
                        height=48,
                        inference_ms=1.5,
                    )
                )
                await asyncio.sleep(1.0 / self.fps)
        finally:
            self.active -= 1

    async def start(self) -> None:
        service = Service(service_names=[DETECTOR_SERVICE])
        handler = grpc.method_handlers_generic_handler(
            DETECTOR_SERVICE,
            {
                "Subscribe": grpc.unary_stream_rpc_method_handler(
                    self.subscribe,
                    request_deserializer=dpb.SubscribeRequest.FromString,
                    response_serializer=dpb.SubscribeResponse.SerializeToString,
                )
            },
        )
        service.server.add_generic_rpc_handlers((handler,))
        self.port = await service.start("127.0.0.1", self.port)
        self.service = service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop(0)
            self.service = None


@pytest.fixture
async def fake_detector() -> AsyncIterator[FakeDetector]:
    fake = FakeDetector()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def detector_client(fake_detector: FakeDetector) -> AsyncIterator[AsyncDetectorClient]:
    options = ClientOptions(fake_detector.address, reconnect_initial_s=0.1, reconnect_max_s=0.5)
    client = AsyncDetectorClient(options)
    yield client
    await client.close()


@pytest.fixture
async def analyzer(tmp_path: pathlib.Path) -> AsyncIterator[AnalyzerServer]:
    """A real analyzer service with no language model: jobs complete with a timeline and a note.

    The seed's sampling policy and no detection pass keep the event sequence short and fixed.
    """
    settings = AnalyzerSettings(
        port=0,
        data_dir=tmp_path / "analyzer",
        default_sampling_policy="seed",
        detection_pass=False,
    )
    server = await serve_analyzer(settings)
    yield server
    await server.stop(0)


StartAnalyzer = Callable[..., Awaitable[AnalyzerServer]]


@pytest.fixture
async def start_analyzer(tmp_path: pathlib.Path) -> AsyncIterator[StartAnalyzer]:
    """Real analyzer services, optionally with an engine (``tests.vigil.standin.ScriptedEngine``
    for answers a test can predict); the ``analyzer`` fixture's settings unless overridden."""
    started: list[AnalyzerServer] = []

    async def start(engine: Engine | None = None, **overrides: Any) -> AnalyzerServer:
        fields: dict[str, Any] = {
            "port": 0,
            "data_dir": tmp_path / f"analyzer{len(started)}",
            "default_sampling_policy": "seed",
            "detection_pass": False,
            **overrides,
        }
        server = await serve_analyzer(AnalyzerSettings(**fields), engine=engine)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(0)


@pytest.fixture
def gate() -> asyncio.Event:
    """Clear: the ``engine`` holds every answer after its first word until the test sets it."""
    return asyncio.Event()


@pytest.fixture
def engine(gate: asyncio.Event) -> ScriptedEngine:
    """A scripted model whose answers wait on ``gate`` (modules override it where they need
    another)."""
    return ScriptedEngine("A square moves right at [00:01].", gate=gate)


@pytest.fixture
async def scripted(start_analyzer: StartAnalyzer, engine: ScriptedEngine) -> AnalyzerServer:
    """A real analyzer on the ``engine``."""
    return await start_analyzer(engine)


def write_video(path: pathlib.Path, seconds: float = 2.0, fps: int = 15) -> pathlib.Path:
    """A small mp4 (320x240, mp4v) of a moving square."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    assert writer.isOpened()
    for n in range(int(seconds * fps)):
        frame = np.zeros((240, 320, 3), np.uint8)
        x = (n * 7) % 280
        cv2.rectangle(frame, (x, 100), (x + 40, 140), (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def video_file(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_video(tmp_path / "clip.mp4")


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """61 minutes: over the hour from which the analyzer announces a long video."""
    path = tmp_path_factory.mktemp("videos") / "night.mp4"
    # Made cheap as the analyzer's own long-video tests make it: one tiny frame every 10 s.
    write_h264(path, frames=61 * 6, rate=Fraction(1, 10), width=64, height=48)
    return path
