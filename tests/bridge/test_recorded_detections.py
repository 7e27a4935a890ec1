"""``GET /api/sources/{id}/detections``: the detections stored with a source's recording, as a
player draws them; a real RTSP camera (a still blue picture the test model sees as a knife)
recorded by a real detector behind a real bridge."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import pathlib
from typing import Any

import httpx
import pytest
import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import serve
from detector_service.settings import DetectorSettings
from tests.bridge.conftest import free_port
from tests.detector_service.backends.test_onnx import build_model
from vigil.bench.rtsp import RtspCamera
from vigil.sdk import AsyncDetectorClient

pytestmark = pytest.mark.timeout(90)


def iso(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_the_detections_of_a_recorded_range(tmp_path: pathlib.Path) -> None:
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(tmp_path / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
        recording_segment_s=1.0,
        export_max_s=60.0,
    )
    camera = RtspCamera(("door",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue")
    with camera:
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
        since = datetime.datetime.now(datetime.UTC).timestamp()
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
                await client.add_source("door", "stream", camera.url())
            async with httpx.AsyncClient(base_url=base, timeout=20) as http:
                url = "/api/sources/door/detections"
                frames: list[dict[str, Any]] = []
                async with asyncio.timeout(45):
                    while len(frames) < 3:
                        await asyncio.sleep(0.3)
                        now = datetime.datetime.now(datetime.UTC).timestamp()
                        answer = await http.get(url, params={"start": iso(since), "end": iso(now)})
                        assert answer.status_code == 200, answer.text
                        frames = answer.json()["frames"]
                first = frames[0]
                assert isinstance(first["at"], str)
                assert first["at"].endswith("Z")
                assert since <= seconds(first["at"]) <= now
                assert (first["width"], first["height"]) == (320, 240)
                [knife] = first["detections"]
                assert knife.pop("confidence") > 0.4
                assert isinstance(knife.pop("track_id"), int)
                assert knife == {
                    "class_name": "knife",
                    "class_id": 2,
                    "box": {"x_min": 130.0, "y_min": 180.0, "x_max": 170.0, "y_max": 220.0},
                    "is_weapon": True,
                    "model": "onnx:tiny",
                }
                # The range's bounds: from the second frame on, the first is left out.
                second = str(frames[1]["at"])
                later = await http.get(url, params={"start": second, "end": iso(now)})
                times = [f["at"] for f in later.json()["frames"]]
                assert times[0] == second
                assert first["at"] not in times

                missing = await http.get(
                    "/api/sources/nobody/detections", params={"start": iso(since), "end": iso(now)}
                )
                assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
                reversed_ = await http.get(url, params={"start": iso(now), "end": iso(since)})
                assert (reversed_.status_code, reversed_.json()["code"]) == (
                    400,
                    "INVALID_ARGUMENT",
                )
                too_long = await http.get(url, params={"start": iso(now - 120), "end": iso(now)})
                assert too_long.status_code == 400
                assert (await http.get(url, params={"start": iso(since)})).status_code == 400
        finally:
            bridge.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            await detector.stop(0)
