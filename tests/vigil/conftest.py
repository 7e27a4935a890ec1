"""The real detector and analyzer services on free ports, for the SDK and CLI tests.

The services run on an event loop of their own in a background thread, so that blocking SDK
clients, the CLI's ``main`` and asyncio clients on the test's loop can all call them.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Generic, Protocol, TypeVar

import cv2
import numpy as np
import pytest

from analyzer_service.engine import Engine
from analyzer_service.server import AnalyzerServer
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from vigil.common.v1 import common_pb2

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


def free_port() -> int:
    """A port nothing listens on now (bound and released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


StartDetector = Callable[..., DetectorServer]
StartAnalyzer = Callable[..., AnalyzerServer]


class Stoppable(Protocol):
    async def stop(self, grace: float) -> None: ...


S = TypeVar("S", bound=Stoppable)


class Started(Generic[S]):
    """Servers a test starts on the loop thread; ``stop_all`` stops them when it ends."""

    def __init__(self, loop_thread: LoopThread) -> None:
        self.loop_thread = loop_thread
        self.servers: list[S] = []

    def __call__(self, serve: Coroutine[Any, Any, S]) -> S:
        server = self.loop_thread.run(serve)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            self.loop_thread.run(server.stop(0))


@pytest.fixture
def start_detector(loop_thread: LoopThread, tmp_path: pathlib.Path) -> Iterator[StartDetector]:
    started = Started[DetectorServer](loop_thread)

    def start(**overrides: Any) -> DetectorServer:
        fields: dict[str, Any] = {
            "port": 0,
            "backend": "none",
            "linger_s": 0.2,
            "data_dir": tmp_path / f"detector{len(started.servers)}",
            **overrides,
        }
        return started(serve_detector(DetectorSettings(**fields)))

    yield start
    started.stop_all()


@pytest.fixture
def detector(start_detector: StartDetector) -> DetectorServer:
    return start_detector()


@pytest.fixture
def detector_address(detector: DetectorServer) -> str:
    return f"127.0.0.1:{detector.port}"


@pytest.fixture
def start_analyzer(
    loop_thread: LoopThread, tmp_path: pathlib.Path, detector_address: str
) -> Iterator[StartAnalyzer]:
    """Analyzers whose coarse detection pass uses the real detector of the test."""
    started = Started[AnalyzerServer](loop_thread)

    def start(engine: Engine | None = None, **overrides: Any) -> AnalyzerServer:
        fields: dict[str, Any] = {
            "port": 0,
            "data_dir": tmp_path / f"analyzer{len(started.servers)}",
            "media_workers": 1,
            "engine": "none",
            "detector_address": detector_address,
            **overrides,
        }
        return started(serve_analyzer(AnalyzerSettings(**fields), engine=engine))

    yield start
    started.stop_all()


@pytest.fixture
def analyzer(start_analyzer: StartAnalyzer) -> AnalyzerServer:
    return start_analyzer()


@pytest.fixture
def analyzer_address(analyzer: AnalyzerServer) -> str:
    return f"127.0.0.1:{analyzer.port}"


def write_video(path: pathlib.Path, *, seconds: float = 1.5, fps: int = 10) -> pathlib.Path:
    """320x240 MPEG-4 part 2: a white square moving right over a dark background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    for index in range(round(seconds * fps)):
        image = np.full((240, 320, 3), 40, np.uint8)
        x = 10 + index * 10
        cv2.rectangle(image, (x, 90), (x + 60, 150), (255, 255, 255), -1)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4")


def jpeg(value: int = 128, width: int = 160, height: int = 120) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))
    assert ok
    return bytes(buf)


FRAME_NS = 100_000_000


def knife() -> common_pb2.Detection:
    box = common_pb2.BoundingBox(x_min=10, y_min=10, x_max=50, y_max=40)
    return common_pb2.Detection(class_name="knife", confidence=0.9, is_weapon=True, box=box)


def stage_incident(server: DetectorServer, source_id: str, *, close: bool) -> None:
    """Feed the service's own incident tracker a knife in 3 frames (the "none" backend finds
    nothing by itself), and with ``close`` a frame without it after the closing delay."""
    start = time.time_ns()
    for index in range(3):
        server.incidents.observe(source_id, [knife()], jpeg(), start + index * FRAME_NS)
    if close:
        server.incidents.observe(source_id, [], jpeg(), start + 10 * 1_000_000_000)


def wait_for_incident_subscribers(server: DetectorServer, count: int = 1) -> None:
    """Incident streams see only what happens after the service has registered them."""
    deadline = time.monotonic() + 5
    while len(server.incidents._subscriptions) < count:
        assert time.monotonic() < deadline, "the incident stream never reached the service"
        time.sleep(0.01)
