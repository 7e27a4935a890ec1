"""Sources declared in a file, and the Prometheus metrics endpoint."""

from __future__ import annotations

import asyncio
import pathlib
import socket
import urllib.request

import pytest

from detector_service.server import serve
from detector_service.settings import DetectorSettings
from detector_service.sources import load_sources_file
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

SOURCES = """
[[sources]]
id = "lobby"
kind = "stream"
uri = "rtsp://127.0.0.1:8554/lobby"
display_name = "Lobby"

[[sources]]
id = "pattern2"
kind = "test_pattern"
max_fps = 5
"""


def test_sources_file_is_parsed(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    path.chmod(0o600)  # it may hold camera passwords: others may not read it
    lobby, pattern = load_sources_file(path)
    assert (lobby.id, lobby.kind, lobby.display_name) == ("lobby", pb.SOURCE_KIND_STREAM, "Lobby")
    assert (pattern.kind, pattern.max_fps) == (pb.SOURCE_KIND_TEST_PATTERN, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[sources]]\nid = 'x'\nkind = 'drone'\n", "kind must be one of"),
        ("[[sources]]\nid = 'x'\nkind = 'file'\nurl = 'a'\n", "unknown keys"),
        ("[[sources]]\nid = 'x'\nkind = 'stream'\nuri = 'ftp://a'\n", "rtsp://"),
        ("[[sources\n", "cannot read"),
        (
            "[[sources]]\nid='a'\nkind='test_pattern'\n[[sources]]\nid='a'\nkind='test_pattern'\n",
            "unique",
        ),
    ],
)
def test_bad_sources_file_is_refused_with_the_reason(
    tmp_path: pathlib.Path, text: str, message: str
) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    path.chmod(0o600)  # it may hold camera passwords: others may not read it
    with pytest.raises(InvalidInput, match=message):
        load_sources_file(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_declared_sources_and_metrics_are_served(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    path.chmod(0o600)  # it may hold camera passwords: others may not read it
    metrics_port = free_port()
    settings = DetectorSettings(
        port=0, backend="none", sources_file=path, data_dir=tmp_path, metrics_port=metrics_port
    )
    server = await serve(settings)
    try:
        assert [s.spec.id for s in server.registry.all()] == ["default", "lobby", "pattern2"]
        source = server.registry.get("pattern2")
        subscriber = source.subscribe()
        for _ in range(4):  # the state message, then frames
            await asyncio.wait_for(subscriber.next(), 5)

        def scrape() -> str:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                body: bytes = response.read()
                return body.decode()

        text = await asyncio.to_thread(scrape)
        assert 'vigil_source_subscribers{source="pattern2"} 1.0' in text
        assert 'vigil_source_live{source="pattern2"} 1.0' in text
        assert 'vigil_source_frames_published_total{source="pattern2"}' in text
        assert 'vigil_inference_seconds_count{model="none"}' in text
        assert "vigil_incidents_total 0.0" in text
        source.unsubscribe(subscriber)
    finally:
        await server.stop(0)
