"""Fixtures that start the real detector service on a free port."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.blackhole import BlackHole
from tests.detector_service.replicas import Replicas
from vigil.bench.rtsp import RtspCamera
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(port=0, backend="none", linger_s=0.2, data_dir=tmp_path)


@pytest.fixture
async def detector(detector_settings: DetectorSettings) -> AsyncIterator[DetectorServer]:
    server = await serve(detector_settings)
    try:
        yield server
    finally:
        await server.stop(0)


@pytest.fixture
async def detector_stub(
    detector: DetectorServer,
) -> AsyncIterator[pb_grpc.DetectorServiceAsyncStub]:
    address = f"127.0.0.1:{detector.port}"
    async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
        yield pb_grpc.DetectorServiceStub(channel)


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


@pytest.fixture(scope="session")
def rtsp_camera() -> Iterator[RtspCamera]:
    """Two live 320x240 H.264 mounts (cam0, cam1), a keyframe every second."""
    with RtspCamera(("cam0", "cam1"), width=320, height=240, fps=15, keyframe_s=1.0) as camera:
        yield camera


@pytest.fixture
async def start(tmp_path: pathlib.Path, postgres_url: str) -> AsyncIterator[Replicas]:
    """Starts detector replicas on the test's database; stops them all after the test."""
    replicas = Replicas(tmp_path, postgres_url)
    yield replicas
    while replicas.servers:
        await replicas.stop(replicas.servers[-1])
