"""``/ws/session``: the seed's analysis session events over a plain WebSocket.

Every message, both ways, is a JSON text message ``{"event": NAME, "data": {...}}``; the events
are described in ``bridge.sessions`` and ``bridge.events``. A message that cannot be understood
(not JSON, binary, not an envelope, an unknown event) is answered with an ``error`` event and the
connection stays open. Limits: messages over ``ws_max_message_bytes`` close the socket with 1009
(uvicorn enforces it), more than ``ws_message_rate`` a second (bursts of ``ws_message_burst``)
close it with 1008 and a reason. The Origin and the token were checked at the handshake
(``bridge.security.Guard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from bridge.security import POLICY_VIOLATION, TokenBucket
from bridge.sessions import SessionClient
from bridge.state import bridge_state

log = logging.getLogger(__name__)

router = APIRouter()
ENDPOINT = "session"


def envelope(event: str, data: dict[str, Any]) -> str:
    return orjson.dumps({"event": event, "data": data}).decode()


@router.websocket("/ws/session")
async def session(websocket: WebSocket) -> None:
    state = bridge_state(websocket)
    settings, metrics = state.settings, state.metrics
    await websocket.accept()
    lock = asyncio.Lock()
    sent = metrics.ws_messages.labels(ENDPOINT, "out")
    received = metrics.ws_messages.labels(ENDPOINT, "in")

    async def emit(event: str, data: dict[str, Any]) -> None:
        text = envelope(event, data)
        async with lock:
            await websocket.send_text(text)
        sent.inc()

    client = SessionClient(state, emit)
    bucket = TokenBucket(settings.ws_message_rate, settings.ws_message_burst)
    connections = metrics.connections.labels(ENDPOINT)
    connections.inc()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            received.inc()
            if not bucket.allow():
                metrics.refused.labels("rate").inc()
                reason = f"too many messages: over {settings.ws_message_rate:g} a second"
                with contextlib.suppress(RuntimeError, OSError):
                    async with lock:
                        await websocket.close(code=POLICY_VIOLATION, reason=reason)
                return
            await _dispatch(client, message)
    except (WebSocketDisconnect, OSError):
        return
    finally:
        connections.dec()
        await client.close()


async def _dispatch(client: SessionClient, message: Mapping[str, Any]) -> None:
    text = message.get("text")
    if text is None:
        await client.error("INVALID_MESSAGE", "binary messages are not understood; send JSON text")
        return
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        await client.error("INVALID_JSON", "the message is not valid JSON")
        return
    if not isinstance(parsed, dict) or not isinstance(parsed.get("event"), str):
        await client.error("INVALID_MESSAGE", 'messages are {"event": NAME, "data": {...}} objects')
        return
    await client.handle(parsed["event"], parsed.get("data"))
