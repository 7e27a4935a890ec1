"""``/ws/video-stream[/{source_id}]``: live frames of one source as JSON text messages.

Each frame is ``{"type": "frame", "data": "<base64 JPEG>", "timestamp": <capture time, s>}``,
exactly those keys unless ``?extras=detections,sequence,dropped,latency`` asks for more. Problems
arrive as ``{"type": "error", "code": ..., "message": ...}``; the socket stays open while the hub
retries and is closed (code from ``vigil.errors``) when retrying cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from bridge.frames import Viewer, error_message, parse_extras
from bridge.state import bridge_state
from vigil.errors import VigilError, ws_close_code
from vigil.queues import QueueClosed

log = logging.getLogger(__name__)

router = APIRouter()

# Close code before accepting: the handshake fails with HTTP 403.
POLICY_VIOLATION = 1008


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Browsers always send Origin on WebSockets and CORS does not protect them, so without this
    check any site a user visits could watch the cameras through the user's network access.

    Allowed: no Origin (not a browser), a configured origin, or the bridge's own page (Origin
    matches Host) when Host is an IP address or localhost. Same-origin by a domain name is not
    enough: with DNS rebinding an attacker's name resolves to the bridge and matches its Host.
    """
    if origin is None or origin in allowed or "*" in allowed:
        return True
    parts = urlsplit(origin)
    if host is None or parts.netloc.lower() != host.lower():
        return False
    hostname = parts.hostname or ""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


@router.websocket("/ws/video-stream")
async def default_video_stream(websocket: WebSocket, extras: str | None = None) -> None:
    await stream(websocket, bridge_state(websocket).settings.default_source_id, extras)


@router.websocket("/ws/video-stream/{source_id}")
async def video_stream(websocket: WebSocket, source_id: str, extras: str | None = None) -> None:
    await stream(websocket, source_id, extras)


async def stream(websocket: WebSocket, source_id: str, extras: str | None) -> None:
    state = bridge_state(websocket)
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
    if not origin_allowed(origin, host, state.settings.allowed_origins):
        await websocket.close(code=POLICY_VIOLATION)
        return
    await websocket.accept()
    try:
        with state.frames.watch(source_id, parse_extras(extras)) as viewer:
            await _serve(websocket, viewer)
    except VigilError as e:
        await _refuse(websocket, e)


async def _refuse(websocket: WebSocket, error: VigilError) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(error_message(error.code, error.message))
        await websocket.close(code=ws_close_code(error.status), reason=error.message[:120])


async def _serve(websocket: WebSocket, viewer: Viewer) -> None:
    """Send the viewer's messages until either side ends the view."""
    sender = asyncio.create_task(_send(websocket, viewer))
    # Reading is what notices a browser that left while no frames were flowing (detector down).
    receiver = asyncio.create_task(_receive(websocket))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        results = await asyncio.gather(sender, receiver, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not _is_disconnect(result):
            log.error("viewer of %s failed", viewer.source_id, exc_info=result)
    if sender in done and sender.exception() is None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.close(code=viewer.close_code, reason=viewer.close_reason)


async def _send(websocket: WebSocket, viewer: Viewer) -> None:
    while True:
        try:
            text = await viewer.queue.get()
        except QueueClosed:
            return
        await websocket.send_text(text)


async def _receive(websocket: WebSocket) -> None:
    # The protocol has no client messages yet; anything sent is read and ignored.
    while websocket.client_state != WebSocketState.DISCONNECTED:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _is_disconnect(error: BaseException) -> bool:
    # uvicorn raises ClientDisconnected (an OSError) when sending to a socket that has gone.
    return isinstance(error, WebSocketDisconnect | OSError | asyncio.CancelledError)
