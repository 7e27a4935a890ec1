"""``POST /api/analyses`` with a range of a camera's recording: a live camera recorded by the
real detector, fetched and analysed by the real analyzer (a scripted model), asked about over
REST; and the refusals: malformed bodies, ranges the analyzer refuses, an unknown camera and the
detector down."""

from __future__ import annotations

import asyncio
import datetime
import json
import pathlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests import recorded
from tests.bridge.conftest import StartAnalyzer, StartBridge, free_port
from tests.vigil.standin import ScriptedEngine
from vigil.bench.rtsp import RtspCamera

pytestmark = pytest.mark.timeout(180)

ANSWER = "A ball crosses the gate at [00:01]."


def iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat().replace("+00:00", "Z")


def seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def body(source_id: str, start: float, end: float, **more: object) -> dict[str, object]:
    return {"recording": {"source_id": source_id, "start": iso(start), "end": iso(end)}, **more}


@pytest.fixture
def gate_camera() -> Iterator[RtspCamera]:
    with recorded.camera() as camera:
        yield camera


@pytest.fixture
async def recording_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    settings = DetectorSettings(
        port=0,
        backend="none",
        data_dir=tmp_path / "detector",
        recording_segment_s=recorded.SEGMENT_S,
    )
    server = await serve(settings)
    yield server
    await server.stop(0)


async def finished(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    while True:
        job: dict[str, object] = (await http.get(f"/api/analyses/{job_id}")).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.2)


async def test_a_range_of_a_recording_is_analysed_and_answered_over_rest(
    start_bridge: StartBridge,
    start_analyzer: StartAnalyzer,
    recording_detector: DetectorServer,
    gate_camera: RtspCamera,
) -> None:
    detector = f"127.0.0.1:{recording_detector.port}"
    start, end = await asyncio.to_thread(recorded.record, detector, gate_camera.url())
    analyzer = await start_analyzer(ScriptedEngine(ANSWER), detector_address=detector)
    bridge = await start_bridge(
        detector_address=detector, analyzer_address=f"127.0.0.1:{analyzer.port}"
    )
    async with httpx.AsyncClient(base_url=bridge.http, timeout=60) as http:
        answer = await http.post("/api/analyses", json=body("gate", start, end))
        assert answer.status_code == 201, answer.text
        job = answer.json()
        assert job["recording"]["source_id"] == "gate"
        # What the video covers: from the range's first keyframe (``start`` is one).
        covered = job["recording"]
        assert seconds(covered["start"]) == pytest.approx(start, abs=1e-5)
        assert start < seconds(covered["end"]) <= end + 1e-5
        assert (job["video"]["width"], job["video"]["height"]) == (320, 240)
        done = await finished(http, job["id"])
        assert done["state"] == "succeeded", done
        assert done["recording"] == job["recording"]
        assert done["result"]["summary"].strip() == ANSWER  # type: ignore[index]

        chat = await http.post(f"/api/analyses/{job['id']}/chat", json={"question": "Who?"})
        assert chat.status_code == 200
        last = json.loads(chat.text.splitlines()[-1])
        assert last["done"]
        assert last["text"].strip() == ANSWER

        listed = (await http.get("/api/analyses")).json()["jobs"]
        assert [j["recording"]["source_id"] for j in listed] == ["gate"]

        # Refusals: the analyzer's and the detector's, with their codes.
        unknown = await http.post("/api/analyses", json=body("door", start, end))
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "NOT_FOUND"
        assert "no source 'door'" in unknown.json()["message"]
        now = time.time()
        future = await http.post("/api/analyses", json=body("gate", now, now + 600))
        assert future.status_code == 400
        assert "ends in the future" in future.json()["message"]


async def test_malformed_bodies_and_a_detector_that_is_down(
    start_bridge: StartBridge, start_analyzer: StartAnalyzer
) -> None:
    analyzer = await start_analyzer(detector_address=f"127.0.0.1:{free_port()}")
    bridge = await start_bridge(analyzer_address=f"127.0.0.1:{analyzer.port}")
    now = time.time()
    async with httpx.AsyncClient(base_url=bridge.http, timeout=60) as http:
        both = await http.post("/api/analyses", json=body("gate", now - 60, now, video_id="v1"))
        neither = await http.post("/api/analyses", json={"options": {}})
        naive = {"recording": {"source_id": "gate", "start": "2025-01-01T02:00:00", "end": "x"}}
        no_zone = await http.post("/api/analyses", json=naive)
        for refused in (both, neither, no_zone):
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "INVALID_ARGUMENT"
        assert "exactly one of video_id and recording" in both.json()["message"]
        assert "exactly one of video_id and recording" in neither.json()["message"]

        down = await http.post("/api/analyses", json=body("gate", now - 60, now))
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "UNAVAILABLE"
        assert "cannot be reached to fetch the recording" in down.json()["message"]
        assert down.headers.get("retry-after")
