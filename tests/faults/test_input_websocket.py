"""Hostile WebSocket clients of the bridge: huge and deeply nested messages, floods, a thousand
idle sockets from one address, and peers that vanish without closing.

Already covered elsewhere (tests/bridge/test_security.py, tests/bridge/test_sessions.py): 1009 for
a message just over a small limit, 1008 for a flood on /ws/session, 1013 past a per-address cap of
2, malformed JSON / binary / unknown events on /ws/session answered with an error event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import socketio
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.faults.inputs import RunningBridge, running_bridge, running_detector

pytestmark = pytest.mark.timeout(60)

MB = 1024 * 1024
_GAUGE = re.compile(r'^vigil_bridge_connections\{kind="([^"]+)"\} (\S+)$', re.M)


@pytest.fixture
async def bridge() -> AsyncIterator[RunningBridge]:
    async with (
        running_detector() as detector,
        running_bridge(detector_address=f"127.0.0.1:{detector.port}") as running,
    ):
        yield running


async def open_connections(bridge: RunningBridge) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=bridge.http) as http:
        text = (await http.get("/metrics")).text
    return {kind: float(value) for kind, value in _GAUGE.findall(text)}


async def wait_for_connections(bridge: RunningBridge, expected: float, within_s: float) -> float:
    """Poll the bridge's own gauge until every kind reads ``expected``; return the total."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        counts = await open_connections(bridge)
        if all(v == expected for v in counts.values()) or loop.time() > deadline:
            return sum(counts.values())
        await asyncio.sleep(0.05)


async def event(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def still_answers(ws: ClientConnection) -> None:
    await ws.send('{"event": "ping", "data": {"n": 7}}')
    reply = await event(ws)
    assert (reply["event"], reply["data"]["n"]) == ("pong", 7)


async def closed_with(ws: ClientConnection, within: float = 5.0) -> int | None:
    """The close code once the server closed the socket; None if it is still open after
    ``within`` seconds (messages that arrive meanwhile are read and dropped)."""
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        async with asyncio.timeout(within):
            async for _ in ws:
                pass
    return ws.close_code


async def test_a_50_mb_message_closes_1009_at_once(bridge: RunningBridge) -> None:
    huge = b"x" * (50 * MB)
    for path in ("/ws/session", "/ws/video-stream"):
        # The client's own limit is lifted so that only the bridge's applies.
        async with connect(f"{bridge.ws}{path}", max_size=None) as ws:
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(huge.decode())
            assert await closed_with(ws) == 1009, path
            assert asyncio.get_running_loop().time() - started < 5
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await still_answers(ws)


async def test_deeply_nested_json_is_answered_with_an_error(bridge: RunningBridge) -> None:
    depth = 30_000  # 60 KB: under the 64 KiB message limit, far over any parser's recursion
    nested = '{"event": "ping", "data": {"x": ' + "[" * depth + "]" * depth + "}}"
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await ws.send(nested)
        reply = await event(ws)
        assert (reply["event"], reply["data"]["code"]) == ("error", "INVALID_JSON")
        await ws.send("{" * depth)
        reply = await event(ws)
        assert (reply["event"], reply["data"]["code"]) == ("error", "INVALID_JSON")
        await still_answers(ws)


async def test_socketio_survives_huge_nested_and_flooding_clients(bridge: RunningBridge) -> None:
    depth = 30_000
    # Raw engine.io/socket.io frames over the WebSocket transport: "42" is a socket.io event.
    url = f"{bridge.ws}/socket.io/?EIO=4&transport=websocket"
    async with connect(url) as raw:
        assert str(await raw.recv()).startswith("0")  # engine.io open
        await raw.send("40")  # socket.io connect
        assert str(await raw.recv()).startswith("40")
        invalid = ["error", {"code": "INVALID_JSON", "message": "the message is not valid JSON"}]
        # Nested too deeply, or not JSON at all: an error event, as on /ws/session, at once; and
        # the connection stays usable.
        for junk in ('["ping", ' + "[" * depth + "]" * depth + "]", '["ping", {"a": }]'):
            await raw.send("42" + junk)
            answer = str(await asyncio.wait_for(raw.recv(), 2))
            assert orjson.loads(answer.removeprefix("42")) == invalid
        await raw.send('42["ping", {"n": 2}]')
        event, data = orjson.loads(str(await asyncio.wait_for(raw.recv(), 2)).removeprefix("42"))
        assert (event, data["n"]) == ("pong", 2)
    async with connect(url, max_size=None) as raw:
        assert str(await raw.recv()).startswith("0")
        await raw.send("40")
        assert str(await raw.recv()).startswith("40")
        with contextlib.suppress(websockets.ConnectionClosed):
            await raw.send("42" + orjson.dumps(["ping", "x" * (50 * MB)]).decode())
        assert await closed_with(raw) == 1009
    # A flood gets an error event and a disconnect.
    client = socketio.AsyncClient(reconnection=False)
    errors: list[dict[str, Any]] = []
    client.on("error", errors.append)
    await client.connect(bridge.http, transports=["websocket"], wait_timeout=5)
    for _ in range(100):
        if not client.connected:
            break
        with contextlib.suppress(socketio.exceptions.BadNamespaceError):
            await client.emit("ping", {})
    async with asyncio.timeout(5):
        while client.connected:  # noqa: ASYNC110 - the client offers no event for it
            await asyncio.sleep(0.02)
    assert errors
    assert errors[0]["code"] == "RATE_LIMITED"
    # And a well-behaved client is served as before.
    pongs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)
    client.on("pong", pongs.put_nowait)
    await client.connect(bridge.http, transports=["websocket"], wait_timeout=5)
    await client.emit("ping", {"n": 1})
    assert (await asyncio.wait_for(pongs.get(), 5))["n"] == 1
    await client.disconnect()


async def test_a_flood_on_the_frame_socket_is_read_and_ignored(bridge: RunningBridge) -> None:
    async with connect(f"{bridge.ws}/ws/video-stream") as ws:
        for _ in range(2000):
            await ws.send('{"event": "join_session"}')
        # Viewers have nothing to say: what they send is read and dropped, the frames go on.
        assert await closed_with(ws, 1.0) is None
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "frame"


async def test_a_thousand_idle_sockets_from_one_address(bridge: RunningBridge) -> None:
    limit = bridge.settings.max_connections_per_client
    sockets: list[ClientConnection] = []
    try:
        for batch in range(10):
            sockets += await asyncio.gather(
                *(connect(f"{bridge.ws}/ws/session", open_timeout=10) for _ in range(100))
            )
            assert len(sockets) == (batch + 1) * 100
        closes = await asyncio.gather(*(closed_with(ws, 0.5) for ws in sockets))
        refused = [ws for ws, code in zip(sockets, closes, strict=True) if code is not None]
        assert {ws.close_code for ws in refused} == {1013}
        assert len(refused) == 1000 - limit
        assert refused[0].close_reason == f"too many connections from your address (limit {limit})"
        assert await wait_for_connections(bridge, limit, 5) == limit
        alive = [ws for ws in sockets if ws.close_code is None]
        await asyncio.gather(*(still_answers(ws) for ws in alive))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    assert await wait_for_connections(bridge, 0, 5) == 0


async def vanishing_peer(bridge: RunningBridge, path: str) -> asyncio.StreamWriter:
    """A client that completes the handshake and then never reads, writes or answers a ping, as
    when its host loses power: the socket stays open and nothing else happens."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return writer


async def test_dead_peers_are_reaped_and_their_slots_freed() -> None:
    async with (
        running_detector() as detector,
        running_bridge(
            detector_address=f"127.0.0.1:{detector.port}",
            max_connections_per_client=6,
            ws_ping_interval_s=0.3,
            ws_ping_timeout_s=0.3,
        ) as bridge,
    ):
        paths = ["/ws/session"] * 3 + ["/ws/video-stream"] * 3
        peers = [await vanishing_peer(bridge, path) for path in paths]
        assert await wait_for_connections(bridge, 3, 2) == 6
        # The cap is reached: one more is turned away ...
        async with connect(f"{bridge.ws}/ws/session") as extra:
            assert await closed_with(extra) == 1013
        # ... until the unanswered pings give the dead peers away.
        assert await wait_for_connections(bridge, 0, 5) == 0
        async with connect(f"{bridge.ws}/ws/session") as ws:
            await still_answers(ws)
        for writer in peers:
            writer.close()
