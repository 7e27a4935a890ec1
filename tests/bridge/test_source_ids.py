"""The bridge refuses what the detector refuses: a source id is checked whole, by the same rule.

A real bridge in front of a real detector: a bad id in a body, a path, a query or a WebSocket URL
never reaches the detector, and one the rule accepts goes through.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.bridge.conftest import RunningBridge, StartBridge

pytestmark = pytest.mark.timeout(30)

BAD_IDS = ["cam\n", "\ncam", "cam ", "a" * 65, "../x"]


@pytest.fixture
async def bridge(start_bridge: StartBridge, detector: Any) -> RunningBridge:
    return await start_bridge(detector_address=detector.address)


@pytest.fixture
async def client(bridge: RunningBridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


@pytest.mark.parametrize("source_id", BAD_IDS)
async def test_a_bad_source_id_is_refused_in_a_body(
    client: httpx.AsyncClient, source_id: str
) -> None:
    added = await client.post("/api/sources", json={"id": source_id, "kind": "test_pattern"})
    assert (added.status_code, added.json()["code"]) == (400, "INVALID_ARGUMENT"), added.text
    listed = (await client.get("/api/sources")).json()
    assert [s["spec"]["id"] for s in listed["sources"]] == ["default"]


@pytest.mark.parametrize("source_id", ["cam\n", "cam ", "a" * 65])
async def test_a_bad_source_id_is_refused_in_a_path_and_a_query(
    client: httpx.AsyncClient, source_id: str
) -> None:
    removed = await client.delete(f"/api/sources/{quote(source_id, safe='')}")
    assert (removed.status_code, removed.json()["code"]) == (400, "INVALID_ARGUMENT")
    listed = await client.get("/api/incidents", params={"source_id": source_id})
    assert (listed.status_code, listed.json()["code"]) == (400, "INVALID_ARGUMENT")


async def test_a_bad_source_id_is_refused_on_the_video_websocket(bridge: RunningBridge) -> None:
    async with connect(f"{bridge.ws}/ws/video-stream/cam%0A") as socket:
        refusal = json.loads(await socket.recv())
        with pytest.raises(ConnectionClosed) as info:
            await socket.recv()
    assert refusal["code"] == "INVALID_ARGUMENT", refusal
    assert "source ids are 1-64 letters" in refusal["message"]
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008


async def test_the_longest_source_id_goes_through(client: httpx.AsyncClient) -> None:
    source_id = "a-Z_9" * 12 + "abcd"
    added = await client.post("/api/sources", json={"id": source_id, "kind": "test_pattern"})
    assert added.status_code == 201, added.text
    removed = await client.delete(f"/api/sources/{quote(source_id, safe='')}")
    assert removed.status_code == 200, removed.text
