"""The recording through the SDK (both flavours) and ``vigil recordings``, against a real detector
recording a real RTSP camera (the detector runs on a loop thread, so blocking clients can call it).
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.recording.media import decoded
from tests.vigil.conftest import LoopThread
from vigil.bench.rtsp import RtspCamera
from vigil.cli import main
from vigil.core.errors import InvalidInput, NotFound
from vigil.sdk import AsyncDetectorClient, Coverage, DetectorClient, ExportInfo, TimeRange

pytestmark = pytest.mark.timeout(60)


@dataclass
class Running:
    address: str
    server: DetectorServer
    start: float  # a recorded stretch of closed segments
    end: float


def within_a_microsecond(window: TimeRange, running: Running) -> bool:
    # Times travel as nanosecond timestamps: a float of seconds may come back a little off.
    assert window.end is not None
    return (window.start, window.end) == pytest.approx((running.start, running.end), abs=1e-6)


@pytest.fixture(scope="module")
def running(rtsp_camera: RtspCamera, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    thread = LoopThread()
    settings = DetectorSettings(
        port=0, backend="none", data_dir=tmp_path_factory.mktemp("d"), recording_segment_s=1.0
    )
    server = thread.run(serve(settings))
    address = f"127.0.0.1:{server.port}"
    try:
        with DetectorClient(address) as client:
            client.add_source("gate", "stream", rtsp_camera.url("cam0"))
        deadline = time.monotonic() + 30
        while len(server.recorder.index.all_segments("gate")) < 3:
            assert time.monotonic() < deadline, "nothing recorded"
            time.sleep(0.1)
        segments = server.recorder.index.all_segments("gate")
        yield Running(address, server, segments[0].start + 0.1, segments[2].end - 0.1)
    finally:
        thread.run(server.stop(0))
        thread.close()


def test_the_blocking_client(running: Running, tmp_path: pathlib.Path) -> None:
    with DetectorClient(running.address) as client:
        coverage = client.coverage("gate")
        assert isinstance(coverage, Coverage)
        [now] = coverage.ranges
        assert now.end is None
        assert now.start <= running.start
        assert coverage.bytes > 0
        [window] = client.coverage("gate", start=running.start, end=running.end).ranges
        assert within_a_microsecond(window, running)
        assert client.get_source("gate").recording

        in_memory = client.export("gate", running.start, running.end)
        assert in_memory.path is None
        assert in_memory.info.size == len(in_memory.data)
        assert running.start - 1.0 <= in_memory.info.start <= running.start
        assert {(f.width, f.height) for f in decoded(in_memory.data)} == {(320, 240)}
        to_file = client.export("gate", running.start, running.end, path=tmp_path / "a.mp4")
        assert to_file.data == b""
        assert (tmp_path / "a.mp4").read_bytes() == in_memory.data
        with client.export_stream("gate", running.start, running.end, offset=10, limit=20) as s:
            items = list(s)
        assert isinstance(items[0], ExportInfo)
        assert b"".join(i for i in items[1:] if isinstance(i, bytes)) == in_memory.data[10:30]

        shot = client.snapshot("gate", at=running.start + 0.5)
        assert (shot.width, shot.height) == (320, 240)
        assert cv2.imdecode(np.frombuffer(shot.jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
        assert client.snapshot("gate").at > time.time() - 5
        with pytest.raises(NotFound):
            client.coverage("nobody")
        with pytest.raises(InvalidInput):
            client.export("gate", running.end, running.start)


async def test_the_asyncio_client(running: Running, tmp_path: pathlib.Path) -> None:
    async with AsyncDetectorClient(running.address) as client:
        coverage = await client.coverage("gate", start=running.start, end=running.end)
        [window] = coverage.ranges
        assert within_a_microsecond(window, running)
        recording = await client.export("gate", running.start, running.end)
        saved = await client.export("gate", running.start, running.end, path=tmp_path / "b.mp4")
        assert (tmp_path / "b.mp4").read_bytes() == recording.data
        assert saved.info == recording.info
        shot = await client.snapshot("gate", at=running.start + 0.5)
        assert shot.at <= running.start + 0.5 + 1e-3
        with pytest.raises(NotFound):
            await client.snapshot("gate", at=running.start - 600)


def test_vigil_recordings(
    running: Running, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    connect = ["--detector", running.address]
    assert main(["recordings", "coverage", "gate", *connect]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["FROM", "UNTIL", "SECONDS"]
    assert out[1].split()[1] == "recording"
    assert out[-1].endswith("MB kept")

    window = ["--start", str(running.start), "--end", str(running.end)]
    mp4 = tmp_path / "out.mp4"
    assert main(["recordings", "export", "gate", *window, "-o", str(mp4), *connect]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {mp4.stat().st_size} bytes to {mp4}")
    assert len(decoded(mp4.read_bytes())) > 15

    jpeg = tmp_path / "at.jpg"
    at = ["--at", str(running.start + 0.5)]
    assert main(["recordings", "snapshot", "gate", *at, "-o", str(jpeg), "--json", *connect]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["width"], printed["height"]) == (320, 240)
    assert cv2.imread(str(jpeg)) is not None
    # Relative times, and what the service refused, with its code.
    assert main(["recordings", "coverage", "gate", "--start=-1h", "--json", *connect]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] > 0
    assert main(["recordings", "coverage", "nobody", *connect]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
