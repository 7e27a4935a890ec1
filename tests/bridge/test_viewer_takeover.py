"""A browser viewer on the bridge keeps its WebSocket when the detector replica running its source
is SIGKILLed: the bridge resubscribes (with backoff) through its ``ipv4:`` target, the other
replica takes the source over when the lease runs out, and frames come again on the same
connection without the page doing anything. How long it took is printed (``vigil bench``)."""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

import orjson
from websockets.asyncio.client import connect

from tests.bridge.conftest import StartBridge
from tests.detector_service.replicas import SOURCES, WAIT_S, owners, spawn, until
from vigil.sdk import AsyncDetectorClient


async def next_message(ws: Any) -> bytes | dict[str, Any]:
    """A frame (binary, as the page asks for them) or an error message (JSON text)."""
    message = await ws.recv()
    if isinstance(message, bytes):
        return message
    parsed: dict[str, Any] = orjson.loads(message)
    return parsed


async def test_a_viewer_resumes_on_the_same_websocket_after_its_replica_is_killed(
    start_bridge: StartBridge, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    a, port_a = await asyncio.to_thread(spawn, tmp_path, postgres_url, "a")
    b, port_b = await asyncio.to_thread(spawn, tmp_path, postgres_url, "b")
    try:
        target = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}"
        async with AsyncDetectorClient(target) as client:
            for source_id in SOURCES:
                await client.add_source(source_id, "test_pattern", mode="always", max_fps=5)
        await until(
            lambda: set(owners(postgres_url).values()) == {"a", "b"}, "sources on a and on b"
        )
        watched = sorted(s for s, owner in owners(postgres_url).items() if owner == "a")[0]
        bridge = await start_bridge(detector_address=target)
        url = f"{bridge.ws}/ws/video-stream/{watched}?format=binary"
        async with asyncio.timeout(WAIT_S), connect(url, max_size=None) as ws:
            while not isinstance(await next_message(ws), bytes):
                pass  # the source may still be starting
            a.kill()
            killed = time.monotonic()
            # The stream from a breaks: the viewer is told, and the socket stays open.
            while isinstance(message := await next_message(ws), bytes):
                pass
            assert message["type"] == "error"
            assert message["code"] == "UNAVAILABLE"
            # Then frames again, on the same socket: from b, the only replica left.
            while not isinstance(message := await next_message(ws), bytes):
                assert message["type"] == "error", message
            took = time.monotonic() - killed
            assert owners(postgres_url)[watched] == "b"
            # And they keep coming.
            for _ in range(3):
                assert isinstance(await next_message(ws), bytes)
        print(f"viewer of {watched} had frames from b {took:.1f} s after a was killed")
    finally:
        for process in (a, b):
            process.kill()
            process.wait()
