"""``GET /metrics``: the bridge's Prometheus counters, in the text exposition format.

Each app has its own registry, so several bridges in one process (tests) do not collide.

* ``vigil_bridge_connections{kind}``: WebSockets open now (video, session, socketio)
* ``vigil_bridge_frames_sent_total{source}`` / ``vigil_bridge_frames_dropped_total{source}``:
  frames sent to viewers, and frames a viewer's newest-wins queue dropped because it was behind
* ``vigil_bridge_ws_messages_total{endpoint,direction}``: WebSocket / Socket.IO messages
* ``vigil_bridge_http_requests_total{method,status}``: HTTP responses by status
* ``vigil_bridge_refused_total{reason}``: requests or connections a guard refused (token, origin,
  connections, rate, size)
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "vigil_bridge_connections", "WebSockets open now.", ["kind"], registry=r
        )
        self.frames_sent = Counter(
            "vigil_bridge_frames_sent", "Frames sent to viewers.", ["source"], registry=r
        )
        self.frames_dropped = Counter(
            "vigil_bridge_frames_dropped",
            "Frames dropped for viewers that fell behind (newest wins).",
            ["source"],
            registry=r,
        )
        self.ws_messages = Counter(
            "vigil_bridge_ws_messages",
            "WebSocket and Socket.IO messages.",
            ["endpoint", "direction"],
            registry=r,
        )
        self.http_requests = Counter(
            "vigil_bridge_http_requests", "HTTP responses.", ["method", "status"], registry=r
        )
        self.refused = Counter(
            "vigil_bridge_refused", "Requests or connections refused.", ["reason"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """ASGI middleware counting HTTP responses by method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.http_requests.labels(scope["method"], str(status[0])).inc()


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
