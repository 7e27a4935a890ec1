"""A real analyzer on the session's tiny Gemma 3, a detector whose ONNX model sees a knife in a
scripted file source, and a webhook receiver on 127.0.0.1: verified alerts end to end."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from analyzer_service.server import AnalyzerServer
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from tests.detector_service.incidents.test_webhook import Receiver
from tests.llm import SharedEngine
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

FPS = 20
# A knife lying still for 1.5 s, then nothing for 1 s: one incident that opens and closes. Still,
# so that every frame (and so the snapshot, the crop and the frames before) is the same picture
# however the capture's timing falls, and a seed gives the same verdict every run.
KNIFE_AT = (60, 100)
SCENE: list[list[tuple[int, int]]] = [[KNIFE_AT]] * 30 + [[]] * 20


class HeldPort:
    """A port held bound but never listening (connections are refused) until released."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]

    def release(self) -> int:
        self.socket.close()
        return self.port


@pytest.fixture
def held_port() -> Iterator[HeldPort]:
    held = HeldPort()
    yield held
    held.socket.close()


class Analyzers:
    """Starts real analyzers on the session's engine; stops them after the test."""

    def __init__(self, tmp_path: pathlib.Path, engine: SharedEngine) -> None:
        self.tmp_path = tmp_path
        self.engine = engine
        self.running: list[AnalyzerServer] = []

    async def start(self, port: int = 0) -> AnalyzerServer:
        settings = AnalyzerSettings(
            host="127.0.0.1",
            port=port,
            data_dir=self.tmp_path / "analyzer",
            engine="none",
            media_workers=1,
            detector_address="127.0.0.1:1",
        )
        server = await serve_analyzer(settings, engine=self.engine)
        self.running.append(server)
        return server


@pytest.fixture
async def analyzers(tmp_path: pathlib.Path, llm_engine: SharedEngine) -> AsyncIterator[Analyzers]:
    made = Analyzers(tmp_path, llm_engine)
    yield made
    for server in made.running:
        await server.stop(0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver([200])
    yield made
    made.stop()


@pytest.fixture
def knife_video(tmp_path: pathlib.Path) -> pathlib.Path:
    return mo.write_video(tmp_path / "knife.avi", SCENE, FPS)


@pytest.fixture
def detector_settings(
    tmp_path: pathlib.Path, receiver: Receiver
) -> Callable[..., DetectorSettings]:
    """Settings of a detector seeing knives, posting to ``receiver``; overrides as keywords."""

    def make(**overrides: Any) -> DetectorSettings:
        values: dict[str, Any] = {
            "port": 0,
            "backend": "onnx",
            "onnx_model_path": mo.build_model(tmp_path / "blue.onnx"),
            "confidence": 0.4,
            "weapon_classes": ["knife"],
            "track_lost_s": 2.0,
            "incident_close_after_s": 0.5,
            "incident_cooldown_s": 0.0,
            "incident_webhook_url": receiver.url,
            "data_dir": tmp_path / "detector",
            "linger_s": 0.2,
            "recording": False,
            "verification_temperature": 1.0,
            # The pictures are the snapshot and the crop: the same every run (see SCENE).
            "verification_frames": 0,
            "verification_retry_initial_s": 0.2,
            "verification_retry_max_s": 0.5,
        }
        values.update(overrides)
        return DetectorSettings(**values)

    return make


@contextlib.asynccontextmanager
async def running(settings: DetectorSettings) -> AsyncIterator[tuple[DetectorServer, Stub]]:
    server = await serve_detector(settings)
    try:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
            yield server, pb_grpc.DetectorServiceStub(channel)
    finally:
        await server.stop(0)


async def play(
    stub: Stub, video: pathlib.Path, policy: pb.AlertPolicy.ValueType = pb.ALERT_POLICY_UNSPECIFIED
) -> None:
    """Play the file source "gate" once, to its end."""
    spec = pb.SourceSpec(
        id="gate", kind=pb.SOURCE_KIND_FILE, uri=str(video), max_fps=FPS, alert_policy=policy
    )
    await stub.AddSource(pb.AddSourceRequest(source=spec))
    call = stub.Subscribe(pb.SubscribeRequest(source_id="gate", omit_jpeg=True))
    seen = False
    try:
        async with asyncio.timeout(60):
            async for message in call:
                seen = seen or message.HasField("frame")
                if message.source.state == pb.SOURCE_STATE_STOPPED and seen:
                    break
    finally:
        call.cancel()


async def events_until(
    events: grpc.aio.UnaryStreamCall[Any, pb.StreamIncidentsResponse],
    done: Callable[[list[pb.StreamIncidentsResponse]], bool],
    timeout_s: float = 120.0,
) -> list[pb.StreamIncidentsResponse]:
    """Incident events as they come, until ``done`` says enough (or fails after timeout_s)."""
    got: list[pb.StreamIncidentsResponse] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:
            got.append(event)
            if done(got):
                return got
    raise AssertionError(f"the stream ended: {got}")


async def until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Wait until ``check()`` holds (looked at ten times a second), failing after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.1)
