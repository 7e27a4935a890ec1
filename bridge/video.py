"""``/ws/video-stream[/{source_id}]``: live frames of one source as JSON text messages.

Each frame is ``{"type": "frame", "data": "<base64 JPEG>", "timestamp": <capture time, s>}``,
exactly those keys unless ``?extras=detections,sequence,dropped,latency`` asks for more. Problems
arrive as ``{"type": "error", "code": ..., "message": ...}``; the socket stays open while the hub
retries and is closed (code from ``vigil.core.errors``) when retrying cannot help.

``?format=binary`` sends each frame as one binary message instead, a third smaller and cheaper
on both ends than base64 in JSON (errors stay JSON text messages):

    bytes 0-3       N: length of the header, unsigned 32-bit big-endian
    bytes 4-(4+N)   header: UTF-8 JSON {"type": "frame", "timestamp": <capture time, s>,
                    "sequence": <frame number>} plus the fields ``?extras=`` asks for
    the rest        the JPEG

In a browser: ``const n = new DataView(buf).getUint32(0); const header =
JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n))); const jpeg = new Blob([new
Uint8Array(buf, 4 + n)], {type: "image/jpeg"})``. Each frame is packed once and the same bytes go
to every binary viewer (a viewer asking for ``dropped`` gets its own header, one copy).

``?main=1`` shows the camera's main stream (the source's ``record_uri``) at full size, with the
detection stream's boxes scaled onto it; a source without one sends its usual frames.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import termios
from collections.abc import Callable

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from bridge.frame_messages import error_message, parse_extras
from bridge.frames import Viewer
from bridge.metrics import Metrics
from bridge.security import POLICY_VIOLATION, origin_allowed
from bridge.state import bridge_state
from vigil.core.errors import InvalidInput, VigilError
from vigil.core.queues import QueueClosed

log = logging.getLogger(__name__)

router = APIRouter()

__all__ = ["POLICY_VIOLATION", "origin_allowed", "router"]


@router.websocket("/ws/video-stream")
async def default_video_stream(
    websocket: WebSocket, extras: str | None = None, format: str = "json", main: bool = False
) -> None:
    source_id = bridge_state(websocket).settings.default_source_id
    await stream(websocket, source_id, extras, format, main)


@router.websocket("/ws/video-stream/{source_id}")
async def video_stream(
    websocket: WebSocket,
    source_id: str,
    extras: str | None = None,
    format: str = "json",
    main: bool = False,
) -> None:
    await stream(websocket, source_id, extras, format, main)


async def stream(
    websocket: WebSocket,
    source_id: str,
    extras: str | None,
    format: str = "json",
    main: bool = False,
) -> None:
    state = bridge_state(websocket)
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
    if not origin_allowed(origin, host, state.settings.allowed_origins):
        await websocket.close(code=POLICY_VIOLATION)
        return
    await websocket.accept()
    connections = state.metrics.connections.labels("video")
    connections.inc()
    try:
        if format not in ("json", "binary"):
            raise InvalidInput(f"unknown format {format[:32]!r}; known: json, binary")
        binary = format == "binary"
        watch = state.frames.watch(source_id, parse_extras(extras), binary=binary, main=main)
        with watch as viewer:
            await _serve(websocket, viewer, state.metrics)
    except VigilError as e:
        await _refuse(websocket, e)
    finally:
        connections.dec()


async def _refuse(websocket: WebSocket, error: VigilError) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(error_message(error.code, error.message))
        await websocket.close(code=error.ws_close_code, reason=error.message[:120])


async def _serve(websocket: WebSocket, viewer: Viewer, metrics: Metrics) -> None:
    """Send the viewer's messages until either side ends the view."""
    sender = asyncio.create_task(_send(websocket, viewer, metrics))
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


def unsent_bytes_probe(websocket: WebSocket) -> Callable[[], int] | None:
    """Bytes written for this viewer but not yet taken by its peer, or None if unknowable.

    The kernel's send buffer holds several frames, so a viewer on a slow link would get them
    seconds late before our newest-wins queue ever filled. Asking the socket how much it still
    holds (SIOCOUTQ) plus what the transport buffers lets us skip stale frames instead. The
    socket is reached through the ASGI server's protocol object (uvicorn's ``send`` is a bound
    method of it); any other server simply goes without the check.
    """
    transport = None
    for channel in ("_receive", "_send"):  # middleware tends to wrap send, rarely receive
        protocol = getattr(getattr(websocket, channel, None), "__self__", None)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            break
    if transport is None:
        log.debug("no socket behind this WebSocket: slow viewers rely on the queue alone")
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    fd = sock.fileno()
    buffer = array.array("i", [0])

    def unsent() -> int:
        try:
            fcntl.ioctl(fd, termios.TIOCOUTQ, buffer, True)
        except OSError:
            return 0
        size: int = transport.get_write_buffer_size()
        return buffer[0] + size

    return unsent


def is_frame(message: str | bytes) -> bool:
    return isinstance(message, bytes) or message.startswith('{"type":"frame"')


async def _send(websocket: WebSocket, viewer: Viewer, metrics: Metrics) -> None:
    sent = metrics.frames_sent.labels(viewer.source_id)
    dropped = metrics.frames_dropped.labels(viewer.source_id)
    unsent = unsent_bytes_probe(websocket)
    counted_drops = 0
    while True:
        try:
            message = await viewer.queue.get()
        except QueueClosed:
            return
        if is_frame(message) and unsent is not None and unsent() > len(message):
            # More than a frame is still on its way to this viewer: this one would only arrive
            # late. Skip it (newest wins) and count it as dropped for this viewer.
            viewer.queue.dropped += 1
        elif isinstance(message, bytes):
            await websocket.send_bytes(message)
            sent.inc()
        else:
            await websocket.send_text(message)
            if is_frame(message):
                sent.inc()
        if viewer.queue.dropped > counted_drops:
            dropped.inc(viewer.queue.dropped - counted_drops)
            counted_drops = viewer.queue.dropped


async def _receive(websocket: WebSocket) -> None:
    # The protocol has no client messages yet; anything sent is read and ignored.
    while websocket.client_state != WebSocketState.DISCONNECTED:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _is_disconnect(error: BaseException) -> bool:
    # uvicorn raises ClientDisconnected (an OSError) when sending to a socket that has gone.
    return isinstance(error, WebSocketDisconnect | OSError | asyncio.CancelledError)
