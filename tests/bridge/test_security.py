"""The bridge's guards: origins, CORS, the bearer token (and its trip to gRPC), message size,
message rate, connections per address, and the token kept out of logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
import socketio
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from bridge.server import RedactTokens
from vigil.detector.v1 import detector_service_pb2 as dpb

pytestmark = pytest.mark.timeout(20)

TOKEN = "s3cret-token"
DETECTOR_SERVICE = dpb.DESCRIPTOR.services_by_name["DetectorService"].full_name


class RecordingDetector:
    """A detector offering ListSources only (so ListIncidents is UNIMPLEMENTED), recording the
    metadata each call arrives with."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.server = grpc.aio.server()
        self.port = 0

    async def list_sources(
        self, request: dpb.ListSourcesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> dpb.ListSourcesResponse:
        pairs = context.invocation_metadata() or ()
        self.metadata.append({str(key): str(value) for key, value in pairs})
        return dpb.ListSourcesResponse(sources=[dpb.Source(spec=dpb.SourceSpec(id="cam"))])

    async def start(self) -> None:
        handler = grpc.method_handlers_generic_handler(
            DETECTOR_SERVICE,
            {
                "ListSources": grpc.unary_unary_rpc_method_handler(
                    self.list_sources,
                    request_deserializer=dpb.ListSourcesRequest.FromString,
                    response_serializer=dpb.ListSourcesResponse.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()


@pytest.fixture
async def recording() -> AsyncIterator[RecordingDetector]:
    fake = RecordingDetector()
    await fake.start()
    yield fake
    await fake.server.stop(0)


async def test_token_is_required_and_passed_on_to_grpc(
    start_bridge: Any, recording: RecordingDetector
) -> None:
    bridge = await start_bridge(detector_address=f"127.0.0.1:{recording.port}", token=TOKEN)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        missing = await client.get("/api/sources")
        wrong = await client.get("/api/sources", headers={"authorization": "Bearer nope"})
        in_query = await client.get("/api/sources", params={"token": TOKEN})
        right = await client.get("/api/sources", headers={"authorization": f"Bearer {TOKEN}"})
        health = await client.get("/health")
        page = await client.get("/")
        metrics = await client.get("/metrics")
    for refused in (missing, wrong, in_query, metrics):
        assert refused.status_code == 401
        assert refused.json() == {
            "code": "UNAUTHENTICATED",
            "message": "a valid bearer token is required",
        }
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert right.status_code == 200
    assert [s["spec"]["id"] for s in right.json()["sources"]] == ["cam"]
    assert (health.status_code, page.status_code) == (200, 200)
    # Only the accepted request reached the detector, carrying the token as metadata.
    assert len(recording.metadata) == 1
    assert recording.metadata[0]["authorization"] == f"Bearer {TOKEN}"


async def test_without_a_token_nothing_is_sent_to_grpc(
    start_bridge: Any, recording: RecordingDetector
) -> None:
    bridge = await start_bridge(detector_address=f"127.0.0.1:{recording.port}")
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        assert (await client.get("/api/sources")).status_code == 200
        unimplemented = await client.get("/api/incidents")
    assert "authorization" not in recording.metadata[0]
    assert unimplemented.status_code == 501
    assert unimplemented.json() == {
        "code": "UNIMPLEMENTED",
        "message": "the detector does not offer this yet",
    }


async def test_websockets_need_the_token_at_the_handshake(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address, token=TOKEN)
    for path in ["/ws/session", "/ws/video-stream", "/ws/session?token=nope"]:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await connect(f"{bridge.ws}{path}")
        assert refused.value.response.status_code == 401, path
    async with connect(f"{bridge.ws}/ws/session?token={TOKEN}") as ws:
        await ws.send('{"event": "ping"}')
        assert orjson.loads(await ws.recv())["event"] == "pong"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(f"{bridge.ws}/ws/video-stream", additional_headers=headers) as ws:
        assert orjson.loads(await ws.recv())["type"] == "frame"
    # Socket.IO: refused without the token, accepted with it in the auth payload.
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(bridge.http, transports=["websocket"], wait_timeout=5)
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        bridge.http, transports=["websocket"], auth={"token": TOKEN}, wait_timeout=5
    )
    assert client.connected
    await client.disconnect()


async def test_hostile_origins_are_refused(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    evil = Origin("http://evil.example")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await connect(f"{bridge.ws}/ws/session", origin=evil)
    assert refused.value.response.status_code == 403
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            bridge.http,
            transports=["websocket"],
            headers={"Origin": "http://evil.example"},
            wait_timeout=5,
        )
    async with httpx.AsyncClient(base_url=bridge.http) as http:
        preflight = {"access-control-request-method": "POST"}
        hostile = await http.options(
            "/api/analyses", headers={"origin": "http://evil.example", **preflight}
        )
        friendly = await http.options(
            "/api/analyses", headers={"origin": "http://localhost:8000", **preflight}
        )
        simple = await http.get("/health", headers={"origin": "http://evil.example"})
        # Camera updates (PUT /api/sources/{id}) from a configured origin are allowed too.
        update = await http.options(
            "/api/sources/cam",
            headers={"origin": "http://localhost:8000", "access-control-request-method": "PUT"},
        )
    assert hostile.status_code == 400
    assert "access-control-allow-origin" not in hostile.headers
    assert friendly.status_code == 200
    assert friendly.headers["access-control-allow-origin"] == "http://localhost:8000"
    assert "access-control-allow-credentials" not in friendly.headers
    assert "access-control-allow-origin" not in simple.headers
    assert update.status_code == 200
    assert "PUT" in update.headers["access-control-allow-methods"]
    # The configured origin may open sessions.
    async with connect(f"{bridge.ws}/ws/session", origin=Origin("http://localhost:8000")) as ws:
        await ws.send('{"event": "ping"}')
        assert orjson.loads(await ws.recv())["event"] == "pong"


async def test_oversized_message_closes_with_1009(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address, ws_max_message_bytes=1024)
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await ws.send(orjson.dumps({"event": "ping", "data": {"pad": "x" * 900}}).decode())
        assert orjson.loads(await ws.recv())["event"] == "pong"
        await ws.send(orjson.dumps({"event": "ping", "data": {"pad": "x" * 2000}}).decode())
        async with asyncio.timeout(5):
            await ws.wait_closed()
    assert ws.close_code == 1009


async def test_message_flood_closes_with_1008(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(
        detector_address=detector.address, ws_message_rate=5.0, ws_message_burst=5
    )
    async with connect(f"{bridge.ws}/ws/session") as ws:
        for _ in range(20):
            await ws.send('{"event": "ping"}')
        pongs = 0
        async with asyncio.timeout(5):
            with contextlib.suppress(websockets.ConnectionClosedError):
                async for message in ws:
                    pongs += orjson.loads(message)["event"] == "pong"
    assert ws.close_code == 1008
    assert ws.close_reason == "too many messages: over 5 a second"
    assert pongs == 5


async def test_connections_per_address_are_limited(start_bridge: Any, detector: Any) -> None:
    bridge = await start_bridge(detector_address=detector.address, max_connections_per_client=2)
    async with connect(f"{bridge.ws}/ws/session") as a, connect(f"{bridge.ws}/ws/session") as b:
        async with connect(f"{bridge.ws}/ws/session") as extra:
            async with asyncio.timeout(5):
                await extra.wait_closed()
        assert extra.close_code == 1013
        assert extra.close_reason == "too many connections from your address (limit 2)"
        for ws in (a, b):
            await ws.send('{"event": "ping"}')
            assert orjson.loads(await ws.recv())["event"] == "pong"
    # Slots are given back when sockets close.
    async with connect(f"{bridge.ws}/ws/session") as again:
        await again.send('{"event": "ping"}')
        assert orjson.loads(await again.recv())["event"] == "pong"


async def test_forwarded_for_counts_only_from_trusted_proxies(
    start_bridge: Any, detector: Any
) -> None:
    async def refused(bridge: Any, forwarded: str) -> bool:
        headers = {"X-Forwarded-For": forwarded}
        async with connect(f"{bridge.ws}/ws/session", additional_headers=headers) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send('{"event": "ping"}')
                await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code == 1013

    # No trusted proxies (the default): what a client claims changes nothing.
    bridge = await start_bridge(detector_address=detector.address, max_connections_per_client=1)
    headers = {"X-Forwarded-For": "198.51.100.1"}
    async with connect(f"{bridge.ws}/ws/session", additional_headers=headers):
        assert await refused(bridge, "198.51.100.2")
    # Behind a trusted proxy, each client it names has its own count.
    proxied = await start_bridge(
        detector_address=detector.address,
        max_connections_per_client=1,
        trusted_proxies=["127.0.0.1/32"],
    )
    async with connect(f"{proxied.ws}/ws/session", additional_headers=headers):
        assert not await refused(proxied, "198.51.100.2")
        assert await refused(proxied, "198.51.100.1")


def test_tokens_are_scrubbed_from_log_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1,
        '%s - "WebSocket %s" [accepted]', ("127.0.0.1:5", f"/ws/session?token={TOKEN}&a=1"), None,
    )  # fmt: skip
    assert RedactTokens().filter(record)
    assert TOKEN not in record.getMessage()
    assert "token=[redacted]&a=1" in record.getMessage()
