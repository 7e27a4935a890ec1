"""The bridge's guards: origins, the optional bearer token, connection and message-rate limits.

``Guard`` is one ASGI middleware in front of every route (mounted Socket.IO included):

* HTTP: with a token configured, every request needs ``Authorization: Bearer <token>`` except
  ``/health`` (liveness probes) and the public page (``/``, ``/static/``), which a browser loads
  by navigation and cannot attach a header to; a missing or wrong token gets 401 JSON.
* WebSocket: the Origin must be allowed (else the handshake is refused: HTTP 403); the token must
  come as the header or ``?token=`` (else HTTP 401 where the server supports handshake
  responses, close 1008 otherwise); more than ``max_connections_per_client`` open sockets from
  one address get the extra one accepted and closed with 1013 and a reason, which a browser can
  read (it cannot read a refused handshake's status).
* Socket.IO's own ``connect`` handler checks the token (it may also come in the ``auth`` payload)
  and engine.io checks the Origin with ``origin_allowed``.

The token is compared in constant time and never logged (``server.redact`` scrubs ``token=`` from
uvicorn's access and WebSocket log lines).
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import time
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.body_deadline import BodyDeadline
from bridge.clients import client_address
from bridge.metrics import Metrics
from bridge.settings import BridgeSettings

# Close codes: policy violation (also a refused handshake), try again later.
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# Paths served without a token.
PUBLIC_PATHS = frozenset({"/", "/health", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
SOCKETIO_PREFIX = "/socket.io"


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


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def query_token(query_string: bytes | str) -> str | None:
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get("token")
    return values[0] if values else None


def token_matches(settings: BridgeSettings, presented: str | None) -> bool:
    """True when no token is configured, or ``presented`` is it (constant-time comparison)."""
    if settings.token is None:
        return True
    if presented is None:
        return False
    expected = settings.token.get_secret_value().encode()
    return hmac.compare_digest(presented.encode(), expected)


class TokenBucket:
    """Incoming-message rate limit of one connection: ``rate`` a second, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message})


class Guard:
    """ASGI middleware enforcing the token, WebSocket origins and connections per address."""

    def __init__(self, app: ASGIApp, settings: BridgeSettings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self._open: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _needs_token(self, path: str) -> bool:
        if self.settings.token is None or path in PUBLIC_PATHS:
            return False
        # Socket.IO checks the token in its connect handler, where ``auth`` can carry it.
        return not path.startswith(PUBLIC_PREFIXES) and not path.startswith(SOCKETIO_PREFIX)

    def _presented(self, scope: Scope, headers: dict[str, str]) -> str | None:
        return bearer(headers.get("authorization")) or query_token(scope.get("query_string", b""))

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        path: str = scope["path"]
        # CORS pre-flights carry no credentials by design; the CORS middleware answers them.
        if (
            self._needs_token(path)
            and scope["method"] != "OPTIONS"
            and not token_matches(self.settings, bearer(headers.get("authorization")))
        ):
            self.metrics.refused.labels("token").inc()
            body = _error_body("UNAUTHENTICATED", "a valid bearer token is required")
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="vigil"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        deadline = BodyDeadline(receive, send, self.settings.upload_idle_timeout_s, self.metrics)
        try:
            await self.app(scope, deadline.receive, deadline.send)
        finally:
            await deadline.answer()  # an application that did not answer after the expiry

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        path: str = scope["path"]
        if not origin_allowed(
            headers.get("origin"), headers.get("host"), self.settings.allowed_origins
        ):
            self.metrics.refused.labels("origin").inc()
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        if self._needs_token(path) and not token_matches(
            self.settings, self._presented(scope, headers)
        ):
            self.metrics.refused.labels("token").inc()
            await self._deny(
                scope, send, 401, "UNAUTHENTICATED", "a valid bearer token is required"
            )
            return
        address = client_address(scope, self.settings.trusted_proxies)
        if self._open[address] >= self.settings.max_connections_per_client:
            self.metrics.refused.labels("connections").inc()
            limit = self.settings.max_connections_per_client
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": TRY_AGAIN_LATER,
                    "reason": f"too many connections from your address (limit {limit})",
                }
            )
            return
        self._open[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    async def _deny(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        """Refuse a handshake with an HTTP response where the server can send one."""
        if "websocket.http.response" in scope.get("extensions", {}):
            body = _error_body(code, message)
            start: Message = {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await send(start)
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
