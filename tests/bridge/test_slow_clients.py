"""Clients that open a connection and then hold it: headers never finished (a WebSocket upgrade
included), a Socket.IO long-polling POST or a JSON body that stalls. Each is ended by a
deadline instead of holding the bridge's connections for ever, and a streaming answer that
outlasts those deadlines is not cut."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import orjson
import pytest

from analyzer_service.server import AnalyzerServer
from tests.bridge.session_clients import start_job, wait_finished
from tests.vigil.standin import ScriptedEngine

pytestmark = pytest.mark.timeout(60)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection (fails if it never closes)."""
    return await asyncio.wait_for(reader.read(), 20)


PARTIAL_HEADERS = {
    "nothing at all": b"",
    "a WebSocket upgrade never finished": (
        b"GET /ws/video-stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    ),
    "HTTP headers never finished": b"GET /health HTTP/1.1\r\nHost: x\r\nAccept: ",
}


@pytest.mark.parametrize("sent", PARTIAL_HEADERS)
async def test_unfinished_headers_are_cut_off(start_bridge: Any, sent: str) -> None:
    bridge = await start_bridge(header_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(PARTIAL_HEADERS[sent])
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()
    # A request that completes its headers in time is served, and keeps its connection after.
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()


async def stalled_body(port: int, target: str, content_type: str) -> tuple[int, Any]:
    """Send a request's headers and 5 of its 1000 body bytes, then nothing; the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"qu'
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    body = await reader.readexactly(int(headers["content-length"]))
    assert headers["connection"] == "close"
    writer.close()
    return int(lines[0].split()[1]), orjson.loads(body)


async def test_stalled_request_bodies_end_with_408(start_bridge: Any) -> None:
    bridge = await start_bridge(upload_idle_timeout_s=0.5)
    expected = {
        "code": "IDLE_TIMEOUT",
        "message": "no data for 0.5 s: the idle timeout ended the request",
    }
    # A JSON request (the chat question's body).
    status, body = await stalled_body(bridge.port, "/api/analyses/x/chat", "application/json")
    assert (status, body) == (408, expected)
    # A Socket.IO long-polling POST of an open engine.io session.
    async with httpx.AsyncClient(base_url=bridge.http, timeout=10) as http:
        opened = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert opened.status_code == 200, opened.text
    sid = orjson.loads(opened.text[1:])["sid"]  # "0{...}": engine.io's open packet
    target = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    status, body = await stalled_body(bridge.port, target, "text/plain;charset=UTF-8")
    assert (status, body) == (408, expected)


async def test_a_streaming_answer_outlasts_the_body_deadline(
    start_bridge: Any,
    detector: Any,
    scripted: AnalyzerServer,
    engine: ScriptedEngine,
    gate: asyncio.Event,
    video_file: pathlib.Path,
) -> None:
    bridge = await start_bridge(
        detector_address=detector.address,
        analyzer_address=f"127.0.0.1:{scripted.port}",
        upload_idle_timeout_s=0.2,
    )
    gate.set()
    job_id = await start_job(bridge, video_file)
    assert (await wait_finished(bridge, job_id))["state"] == "succeeded"
    gate.clear()
    url = f"/api/analyses/{job_id}/chat"
    async with (
        httpx.AsyncClient(base_url=bridge.http, timeout=10) as client,
        client.stream("POST", url, json={"question": "What moves?"}) as response,
    ):
        lines = response.aiter_lines()
        first = orjson.loads(await asyncio.wait_for(anext(lines), 5))
        # The answer is held well past the body deadline: the request's body was complete, so
        # the wait for the client's disconnect is not a stalled body.
        await asyncio.sleep(1.0)
        gate.set()
        rest = [orjson.loads(line) async for line in lines]
    assert [first["delta"], *(p["delta"] for p in rest[:-1])] == engine.words
    assert rest[-1]["done"] is True
