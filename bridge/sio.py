"""The session events over Socket.IO (python-socketio's ASGI server, mounted at ``/socket.io``).

The seed's page used a Socket.IO client: it emits ``join_session``, ``leave_session``, ``ping``
and ``chat`` and listens for ``analysis_progress``, ``long_video_detected``, ``ai_thinking``,
``analysis_complete``, ``chat_response`` and ``error``; the handlers are ``bridge.sessions``', the
same as ``/ws/session``'s. The Origin is checked by engine.io with ``origin_allowed``; the token
(when configured) may come as the ``Authorization`` header, ``?token=`` or the ``auth`` payload
(``io({auth: {token}})``); a refused connection gets ``connect_error`` with
``{"code", "message"}``. Incoming messages are size- and rate-limited like ``/ws/session``'s; a
client over the rate gets an ``error`` event and is disconnected. A message that is not JSON, or
is nested too deeply to decode, gets an ``error`` event ``INVALID_JSON`` as on ``/ws/session``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
import socketio
from fastapi import FastAPI

from bridge.redis_bindings import TIMEOUT_S
from bridge.security import TokenBucket, bearer, origin_allowed, query_token, token_matches
from bridge.sessions import SessionClient
from bridge.settings import BridgeSettings
from bridge.state import BridgeState

log = logging.getLogger(__name__)

PATH = "/socket.io"
ENDPOINT = "socketio"
# The Redis pub/sub channel the replicas' Socket.IO servers share.
CHANNEL = "vigil:bridge:socketio"
# The event a packet whose JSON cannot be decoded turns into (see ``_PacketJson``).
_UNDECODABLE = "\x00undecodable"


class _PacketJson:
    """The JSON codec python-socketio decodes packets with.

    With the standard one, a packet that is not JSON (or an array nested 30 000 deep, which the
    standard decoder recurses into until RecursionError) raises inside python-socketio, which logs
    a traceback and answers nothing. orjson refuses nesting past 1024 levels at once, and a packet
    it cannot decode becomes the event ``_UNDECODABLE``, answered like ``/ws/session`` answers.
    """

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return [_UNDECODABLE]


class _Connection:
    def __init__(self, client: SessionClient, bucket: TokenBucket) -> None:
        self.client = client
        self.bucket = bucket


def _redis_manager(url: str) -> socketio.AsyncRedisManager:
    """python-socketio's Redis manager: an emit to a sid or a room on any replica reaches the
    client wherever it is connected, and disconnecting a sid works from any replica. It
    reconnects to a restarted Redis by itself (after 1 s, then backing off up to a minute)."""
    # No read timeout: its subscription waits for messages indefinitely by design.
    options = {"socket_connect_timeout": TIMEOUT_S}
    return socketio.AsyncRedisManager(url, channel=CHANNEL, redis_options=options)


def mount(app: FastAPI, settings: BridgeSettings) -> socketio.AsyncServer:
    """Create the Socket.IO server and mount it on ``app`` at ``/socket.io``."""

    def check_origin(origin: str | None, environ: dict[str, Any]) -> bool:
        return origin_allowed(origin, environ.get("HTTP_HOST"), settings.allowed_origins)

    redis_url = settings.redis_url.get_secret_value()
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=_redis_manager(redis_url) if redis_url else None,
        cors_allowed_origins=check_origin,
        cors_credentials=False,
        max_http_buffer_size=settings.ws_max_message_bytes,
        json=_PacketJson,
        logger=False,
        engineio_logger=False,
    )
    connections: dict[str, _Connection] = {}

    def state() -> BridgeState:
        bridge: BridgeState = app.state.vigil
        return bridge

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        presented = (
            bearer(environ.get("HTTP_AUTHORIZATION"))
            or query_token(environ.get("QUERY_STRING", ""))
            or (str(auth.get("token")) if isinstance(auth, dict) and auth.get("token") else None)
        )
        if not token_matches(settings, presented):
            state().metrics.refused.labels("token").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": "UNAUTHENTICATED", "message": "a valid bearer token is required"}
            )
        bridge = state()
        sent = bridge.metrics.ws_messages.labels(ENDPOINT, "out")

        async def emit(event: str, data: dict[str, Any]) -> None:
            # This connection is on this bridge: its own events go straight to it, not round
            # through Redis to every replica (nor held up while Redis is away).
            await sio.emit(event, data, to=sid, ignore_queue=True)
            sent.inc()

        connections[sid] = _Connection(
            SessionClient(bridge, emit),
            TokenBucket(settings.ws_message_rate, settings.ws_message_burst),
        )
        bridge.metrics.connections.labels(ENDPOINT).inc()

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, reason: Any = None) -> None:
        connection = connections.pop(sid, None)
        if connection is not None:
            state().metrics.connections.labels(ENDPOINT).dec()
            await connection.client.close()

    @sio.on("*")  # type: ignore[untyped-decorator]
    async def any_event(event: str, sid: str, *args: Any) -> None:
        connection = connections.get(sid)
        if connection is None:
            return
        bridge = state()
        bridge.metrics.ws_messages.labels(ENDPOINT, "in").inc()
        if not connection.bucket.allow():
            bridge.metrics.refused.labels("rate").inc()
            rate = settings.ws_message_rate
            await connection.client.error(
                "RATE_LIMITED", f"too many messages: over {rate:g} a second"
            )
            await sio.disconnect(sid)
            return
        if event == _UNDECODABLE:
            await connection.client.error("INVALID_JSON", "the message is not valid JSON")
            return
        await connection.client.handle(event, args[0] if args else None)

    app.mount(PATH, socketio.ASGIApp(sio, socketio_path=PATH))
    return sio
