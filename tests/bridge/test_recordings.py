"""A source's recording over REST: coverage, the MP4 with HTTP range requests as a ``<video>``
element makes them, and snapshots; a real RTSP camera recorded by a real detector."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import cv2
import httpx
import numpy as np
import pytest
import pytest_asyncio
import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.bridge.conftest import free_port
from tests.detector_service.recording.media import decoded
from vigil.bench.rtsp import RtspCamera
from vigil.sdk import AsyncDetectorClient

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="module")]


def iso(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Recorded:
    http: httpx.AsyncClient
    detector: DetectorServer
    start: float  # a stretch of closed segments: [start, end)
    end: float

    @property
    def url(self) -> str:
        return mp4(self.start, self.end)


def mp4(start: float, end: float) -> str:
    return f"/api/sources/door/recording.mp4?start={iso(start)}&end={iso(end)}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Recorded]:
    data = tmp_path_factory.mktemp("detector")
    settings = DetectorSettings(
        port=0, backend="none", data_dir=data, recording_segment_s=1.0, export_cache_s=30
    )
    with RtspCamera(("door",), width=320, height=240, fps=15, keyframe_s=1.0) as camera:
        detector = await serve(settings)
        bridge_settings = BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{detector.port}",
            analyzer_address=f"127.0.0.1:{free_port()}",
        )
        sock = listen(bridge_settings)
        options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 2}
        bridge = uvicorn.Server(config(create_app(bridge_settings), bridge_settings, **options))
        task = asyncio.create_task(bridge.serve(sockets=[sock]))
        try:
            async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
                await client.add_source("door", "stream", camera.url())
            index = detector.recorder.index
            async with asyncio.timeout(30):
                while len(index.all_segments("door")) < 4 or not bridge.started:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            segments = index.all_segments("door")
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=20) as http:
                yield Recorded(http, detector, segments[0].start + 0.2, segments[3].end - 0.2)
        finally:
            bridge.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            await detector.stop(0)


async def test_coverage_lists_the_recorded_ranges(recorded: Recorded) -> None:
    response = await recorded.http.get("/api/sources/door/coverage")
    assert response.status_code == 200
    body = response.json()
    [live] = body["ranges"]
    assert live["end"] is None  # recording now
    assert live["start"].endswith("Z")
    assert seconds(live["start"]) <= recorded.start
    assert body["bytes"] > 0
    window = f"start={iso(recorded.start)}&end={iso(recorded.end)}"
    clipped = (await recorded.http.get(f"/api/sources/door/coverage?{window}")).json()
    [part] = clipped["ranges"]
    assert (seconds(part["start"]), seconds(part["end"])) == pytest.approx(
        (recorded.start, recorded.end), abs=1e-3
    )
    missing = await recorded.http.get("/api/sources/nobody/coverage")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    source = (await recorded.http.get("/api/sources")).json()["sources"]
    assert {s["spec"]["id"]: s["recording"] for s in source} == {"default": False, "door": True}


async def test_the_whole_recording_plays(recorded: Recorded) -> None:
    response = await recorded.http.get(recorded.url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == len(response.content)
    frames = decoded(response.content)
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    # From the keyframe at or before the start to the end asked.
    start, end = (seconds(response.headers[h]) for h in ("x-recording-start", "x-recording-end"))
    assert recorded.start - 1.0 <= start <= recorded.start
    assert len(frames) == pytest.approx((end - start) * 15, abs=2)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-1099", 100, 1099),
        ("bytes=0-", 0, None),  # what a <video> element asks first
        ("bytes=5000-", 5000, None),  # ... and after a seek
        ("bytes=-500", -500, None),  # the last 500 bytes
        ("bytes=20-999999999", 20, None),  # past the end: up to the end
    ],
)
async def test_range_requests_get_that_slice_of_the_file(
    recorded: Recorded, header: str, first: int, last: int | None
) -> None:
    whole = (await recorded.http.get(recorded.url)).content
    made = recorded.detector.exports.made
    response = await recorded.http.get(recorded.url, headers={"Range": header})
    assert response.status_code == 206
    expected = whole[first : None if last is None else last + 1]
    assert response.content == expected
    begin = first if first >= 0 else len(whole) + first
    assert response.headers["content-range"] == (
        f"bytes {begin}-{begin + len(expected) - 1}/{len(whole)}"
    )
    assert int(response.headers["content-length"]) == len(expected)
    # The range was joined once: every request after the first reads the detector's cached file.
    assert recorded.detector.exports.made == made


async def test_a_range_past_the_end_is_unsatisfiable(recorded: Recorded) -> None:
    size = len((await recorded.http.get(recorded.url)).content)
    response = await recorded.http.get(recorded.url, headers={"Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


async def test_bad_ranges_are_refused(recorded: Recorded) -> None:
    backwards = (
        f"/api/sources/door/recording.mp4?start={iso(recorded.end)}&end={iso(recorded.start)}"
    )
    response = await recorded.http.get(backwards)
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_ARGUMENT")
    too_long = mp4(recorded.start - 7200, recorded.start)
    assert (await recorded.http.get(too_long)).status_code == 400
    nothing = mp4(recorded.start - 600, recorded.start - 590)
    assert (await recorded.http.get(nothing)).status_code == 404
    assert (await recorded.http.get("/api/sources/door/recording.mp4")).status_code == 400


async def test_snapshots_of_a_time_and_live(recorded: Recorded, tmp_path: pathlib.Path) -> None:
    at = recorded.start + 1.5
    response = await recorded.http.get(f"/api/sources/door/snapshot.jpg?at={iso(at)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (240, 320, 3)
    assert at - 0.1 < seconds(response.headers["x-snapshot-at"]) <= at + 1e-3
    live = await recorded.http.get("/api/sources/door/snapshot.jpg")
    assert live.status_code == 200
    assert cv2.imdecode(np.frombuffer(live.content, np.uint8), cv2.IMREAD_COLOR) is not None
    gone = await recorded.http.get(f"/api/sources/door/snapshot.jpg?at={iso(at - 600)}")
    assert gone.status_code == 404
