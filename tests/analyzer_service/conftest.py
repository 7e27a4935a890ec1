"""Videos made on the spot, and analyzer servers on free ports with real gRPC clients."""

from __future__ import annotations

import pathlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from fractions import Fraction

import pytest

from analyzer_service.engine import Engine
from analyzer_service.server import AnalyzerServer, serve
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.analyzer_service.helpers import connect, write_h264, write_mp4v
from tests.detector_service.backends.test_onnx import build_model
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

StartServer = Callable[..., Awaitable[AnalyzerServer]]


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def short_video(videos: pathlib.Path) -> pathlib.Path:
    """5 s of 1280x720 at 30 fps, MPEG-4 part 2 (what cv2.VideoWriter has here)."""
    path = videos / "short.mp4"
    write_mp4v(path, seconds=5, fps=30, width=1280, height=720)
    return path


@pytest.fixture(scope="session")
def long_video(videos: pathlib.Path) -> pathlib.Path:
    """65 minutes made cheap: one tiny frame every 10 s."""
    path = videos / "long.mp4"
    write_h264(path, frames=65 * 6, rate=Fraction(1, 10), width=64, height=48)
    return path


@pytest.fixture(scope="session")
def very_long_video(videos: pathlib.Path) -> pathlib.Path:
    """121 minutes, one tiny frame every 10 s."""
    path = videos / "very_long.mp4"
    write_h264(path, frames=121 * 6, rate=Fraction(1, 10), width=64, height=48)
    return path


@pytest.fixture(scope="session")
def unreachable_detector() -> Iterator[str]:
    """An address where nothing listens: a port held bound but never listening refuses."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """The job store of ``settings``: SQLite ("") unless a test asks for a fresh PostgreSQL
    database with ``@pytest.mark.parametrize("database_url", ["sqlite", "postgres"],
    indirect=True)``."""
    if getattr(request, "param", "sqlite") == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return ""


@pytest.fixture
def settings(
    tmp_path: pathlib.Path, unreachable_detector: str, database_url: str
) -> AnalyzerSettings:
    return AnalyzerSettings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=database_url,
        media_workers=1,
        engine="none",
        max_concurrent_jobs=1,
        detector_address=unreachable_detector,
    )


@pytest.fixture
async def start_server(settings: AnalyzerSettings) -> AsyncIterator[StartServer]:
    """Start analyzers, stopped when the test ends; settings and engine may be overridden."""
    servers: list[AnalyzerServer] = []

    async def start(
        custom: AnalyzerSettings | None = None, *, engine: Engine | None = None
    ) -> AnalyzerServer:
        server = await serve(custom or settings, engine=engine)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop(0)


@pytest.fixture
async def server(settings: AnalyzerSettings) -> AsyncIterator[AnalyzerServer]:
    running = await serve(settings)
    yield running
    await running.stop(0)


@pytest.fixture
async def stub(server: AnalyzerServer) -> AsyncIterator[pb_grpc.AnalyzerServiceAsyncStub]:
    async with connect(server) as channel:
        yield pb_grpc.AnalyzerServiceStub(channel)


@pytest.fixture(scope="session")
def short_bytes(short_video: pathlib.Path) -> bytes:
    return short_video.read_bytes()


@pytest.fixture(scope="session")
def long_bytes(long_video: pathlib.Path) -> bytes:
    return long_video.read_bytes()


@pytest.fixture(scope="session")
def very_long_bytes(very_long_video: pathlib.Path) -> bytes:
    return very_long_video.read_bytes()


@pytest.fixture
async def onnx_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    """A real detector service whose tiny ONNX model sees a knife in red frames, a person in
    green."""
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
