"""The bridge end to end: uvicorn in-process, a real detector service, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import itertools
import pathlib
import socket
import time
from typing import Any

import cv2
import httpx
import numpy as np
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings

pytestmark = pytest.mark.timeout(20)


async def receive(ws: ClientConnection, within: float = 3.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def receive_type(ws: ClientConnection, kind: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = await receive(ws, within)
            if message["type"] == kind:
                return message


async def test_frames_follow_the_seed_protocol(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/video-stream", max_size=None) as ws:
        # The client offers per-message deflate; JPEG frames must go out uncompressed.
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        frames = [await receive(ws) for _ in range(10)]
    for frame in frames:
        assert set(frame) == {"type", "data", "timestamp"}
        assert frame["type"] == "frame"
    stamps = [f["timestamp"] for f in frames]
    assert all(b > a for a, b in itertools.pairwise(stamps)), stamps
    assert abs(stamps[-1] - time.time()) < 5  # capture time in seconds since the epoch
    image = cv2.imdecode(np.frombuffer(base64.b64decode(frames[-1]["data"]), np.uint8), 1)
    assert image is not None
    assert image.shape == (720, 1280, 3)


async def test_named_source_and_extras(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    url = f"{bridge.ws}/ws/video-stream/default?extras=sequence,dropped"
    async with connect(url, max_size=None) as ws:
        first, second = await receive(ws), await receive(ws)
    assert set(first) == {"type", "data", "timestamp", "sequence", "dropped"}
    assert second["sequence"] > first["sequence"]


async def test_unknown_source_is_refused(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/video-stream/no-such-camera") as ws:
        error = await receive(ws)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
    assert error["type"] == "error"
    assert error["code"] == "NOT_FOUND"
    assert set(error) == {"type", "code", "message"}
    assert ws.close_code == 1008


async def test_unknown_extras_are_refused(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/video-stream?extras=boxes") as ws:
        error = await receive(ws)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
    assert error["code"] == "INVALID_ARGUMENT"
    assert ws.close_code == 1008


async def test_foreign_origins_cannot_open_the_stream(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    url = f"{bridge.ws}/ws/video-stream"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(url, origin=Origin("http://evil.example"))
    assert refused.value.response.status_code == 403
    # DNS rebinding: a foreign name that resolves to the bridge is still a foreign origin.
    evil = f"evil.example:{bridge.port}"
    with pytest.raises(websockets.InvalidStatus):
        await connect(
            f"ws://{evil}/ws/video-stream",
            origin=Origin(f"http://{evil}"),
            sock=socket.create_connection(("127.0.0.1", bridge.port)),
        )
    # A configured origin, and the bridge's own page wherever it is served, may connect.
    for host, origin in [
        (f"127.0.0.1:{bridge.port}", "http://localhost:8000"),
        (f"127.0.0.1:{bridge.port}", bridge.http),
        (f"localhost:{bridge.port}", f"http://localhost:{bridge.port}"),
    ]:
        sock = socket.create_connection(("127.0.0.1", bridge.port))
        async with connect(
            f"ws://{host}/ws/video-stream", origin=Origin(origin), sock=sock, max_size=None
        ) as ws:
            assert (await receive(ws))["type"] == "frame"


async def test_health_reports_each_backend(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["services"] == {
        "bridge": "SERVING",
        "detector": "SERVING",
        "analyzer": "UNREACHABLE",
    }
    assert elapsed < 2.5


async def test_health_ok_when_every_backend_serves(
    start_bridge: Any, detector: Any, tmp_path: pathlib.Path
) -> None:
    analyzer = await serve_analyzer(AnalyzerSettings(port=0, data_dir=tmp_path))
    try:
        bridge = await start_bridge(
            detector_address=detector.address, analyzer_address=f"127.0.0.1:{analyzer.port}"
        )
        async with httpx.AsyncClient(base_url=bridge.http) as client:
            serving = (await client.get("/health")).json()
            # What a draining analyzer (SIGTERM received) reports.
            await analyzer.service.set_serving(False)
            draining = (await client.get("/health")).json()
    finally:
        await analyzer.stop(0)
    assert serving["status"] == "ok"
    assert serving["services"]["analyzer"] == "SERVING"
    assert draining["status"] == "degraded"
    assert draining["services"]["analyzer"] == "NOT_SERVING"


async def test_detector_restart_resumes_frames_on_the_same_socket(
    start_bridge: Any, detector: Any
) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/video-stream", max_size=None) as ws:
        await receive_type(ws, "frame")
        await detector.stop()
        error = await receive_type(ws, "error")
        assert error["code"] == "UNAVAILABLE"
        assert set(error) == {"type", "code", "message"}
        await detector.restart()
        frame = await receive_type(ws, "frame", within=8)
        assert set(frame) == {"type", "data", "timestamp"}


def small_buffer_socket(port: int) -> socket.socket:
    # A tiny receive buffer makes a client that stops reading push back on the bridge quickly,
    # as a slow browser on a slow link does.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_slow_viewer_does_not_slow_a_fast_one(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address, send_buffer_bytes=65536)
    slow_url = f"{bridge.ws}/ws/video-stream?extras=sequence,dropped"
    slow_sock = small_buffer_socket(bridge.port)
    async with (
        # close_timeout: a client that stopped reading cannot see the server's close frame soon.
        connect(slow_url, sock=slow_sock, max_size=None, max_queue=1, close_timeout=0.5) as slow,
        connect(f"{bridge.ws}/ws/video-stream", max_size=None) as fast,
    ):
        await receive(slow)
        await receive(fast)
        arrivals: list[float] = []
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            await receive(fast)
            arrivals.append(time.monotonic())
        # The slow viewer has not read for 3 s. Past the few frames that socket buffers held,
        # the bridge kept only the newest ones for it and counted the rest as dropped.
        late = [await receive(slow)]
        while late[-1]["dropped"] == 0 and len(late) < 30:
            late.append(await receive(slow))
    gaps = np.diff(arrivals)
    # The test pattern runs at 15 fps: the fast viewer keeps (nearly) all of it.
    assert len(arrivals) >= 36, len(arrivals)
    assert gaps.max() < 0.5, gaps.max()
    # And the slow one really was held back: it lost most of those 3 s of frames.
    assert late[-1]["dropped"] > 20, [(m["sequence"], m["dropped"]) for m in late]
    assert late[-1]["sequence"] - late[-2]["sequence"] > 20


async def test_index_serves_the_live_view(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Start AI Detection" in page
    assert '<script type="module" src="/static/js/main.js">' in page
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        script = await client.get("/static/js/live.js")
        policy = await client.get("/static/js/reconnect.js")
    assert script.status_code == 200
    assert "/ws/video-stream" in script.text
    # The page's reconnect policy: 3 tries, the first after 1 s, unless configured otherwise.
    assert '<body data-reconnect-tries="3" data-reconnect-initial-ms="1000">' in page
    assert '"reconnectTries", 3' in policy.text
    # Modules are revalidated before use, so an upgrade never runs an old module with a new one.
    assert script.headers["cache-control"] == "no-cache"
    assert policy.headers["cache-control"] == "no-cache"


async def test_the_page_follows_the_configured_reconnect_policy(
    start_bridge: Any, detector: Any
) -> None:
    bridge = await start_bridge(
        detector_address=detector.address, reconnect_tries=5, reconnect_initial_s=0.25
    )
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        page = (await client.get("/")).text
    assert '<body data-reconnect-tries="5" data-reconnect-initial-ms="250">' in page


async def test_shutdown_closes_viewers_promptly(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/video-stream", max_size=None) as ws:
        await receive(ws)
        bridge.server.should_exit = True
        async with asyncio.timeout(3):
            await ws.wait_closed()
    # 1012 "service restart" from uvicorn, or 1001 "going away" from the hub.
    assert ws.close_code in {1001, 1012}
