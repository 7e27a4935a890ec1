"""Camera health over HTTP: a PTZ camera declared through the bridge, its problems listed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(30)


async def test_ptz_is_declared_and_camera_problems_are_listed(
    start_bridge: Any, detector: Any
) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as client:
        camera = {"id": "dome", "kind": "stream", "uri": "rtsp://127.0.0.1:9/x", "ptz": True}
        added = await client.post("/api/sources", json=camera)
        assert added.status_code == 201, added.text
        assert added.json()["spec"]["ptz"] is True
        assert added.json()["camera_problems"] == []  # not judged before its first picture
        fixed = await client.post(
            "/api/sources", json={"id": "gate", "kind": "stream", "uri": "rtsp://127.0.0.1:9/y"}
        )
        assert fixed.json()["spec"]["ptz"] is False
        listed = {s["spec"]["id"]: s for s in (await client.get("/api/sources")).json()["sources"]}
        assert listed["dome"]["spec"]["ptz"] is True
        assert listed["gate"]["camera_problems"] == []
        # Kept by the detector as declared: a restart brings the PTZ camera back as one.
        await detector.restart()
        async with asyncio.timeout(20):
            while (again := await client.get("/api/sources")).status_code != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        kept = {s["spec"]["id"]: s["spec"]["ptz"] for s in again.json()["sources"]}
        assert kept == {"default": False, "dome": True, "gate": False}
