"""The bridge over two real detectors named by one ``ipv4:`` target (as ``dns:///`` would)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import httpx
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.bridge.conftest import StartBridge
from vigil.sdk import AsyncDetectorClient, ClientOptions

# Bounds waiting for the bridge to see a replica's health change.
SETTLE_S = 10.0


@pytest.fixture
async def detectors(tmp_path: pathlib.Path) -> AsyncIterator[list[DetectorServer]]:
    servers = [
        await serve(DetectorSettings(port=0, backend="none", data_dir=tmp_path / f"d{n}"))
        for n in range(2)
    ]
    yield servers
    for server in servers:
        await server.stop(0)


async def source_ids(server: DetectorServer) -> set[str]:
    options = ClientOptions(f"127.0.0.1:{server.port}", health_checked=False, retry=None)
    async with AsyncDetectorClient(options) as client:
        return {source.id for source in await client.list_sources()}


async def test_sources_spread_over_replicas_that_serve(
    detectors: list[DetectorServer], start_bridge: StartBridge
) -> None:
    one, two = detectors
    target = f"ipv4:127.0.0.1:{one.port},127.0.0.1:{two.port}"
    bridge = await start_bridge(detector_address=target)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        for n in range(10):
            added = await client.post("/api/sources", json={"id": f"a{n}", "kind": "test_pattern"})
            assert added.status_code == 201, added.text
        assert await source_ids(one) & await source_ids(two) == {"default"}
        assert len(await source_ids(one)) > 1
        assert len(await source_ids(two)) > 1

        # One replica drains (NOT_SERVING): once the bridge has seen it (milliseconds), new
        # sources all land on the other; then it is gone and calls still succeed.
        await one.service.set_serving(False)
        deadline = asyncio.get_running_loop().time() + SETTLE_S
        streak, added_count = 0, 0
        while streak < 10:
            assert asyncio.get_running_loop().time() < deadline, "calls still reach the drained one"
            source_id = f"b{added_count}"
            added_count += 1
            added = await client.post(
                "/api/sources", json={"id": source_id, "kind": "test_pattern"}
            )
            assert added.status_code == 201, added.text
            streak = streak + 1 if source_id in await source_ids(two) else 0
        await one.service.server.stop(0)
        for _ in range(10):
            listed = await client.get("/api/sources")
            assert listed.status_code == 200, listed.text
            ids = {source["spec"]["id"] for source in listed.json()["sources"]}
            assert f"b{added_count - 1}" in ids
