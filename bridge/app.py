"""The bridge's ASGI app: browsers speak HTTP and WebSocket here, the services behind speak gRPC.

``create_app(settings)`` builds the app; its lifespan opens one SDK client per backend (their
channels connect lazily and reconnect by themselves, so the bridge starts whether or not the
backends are up) and closes them on shutdown. Routes live in small modules, one per concern.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from bridge import (
    api_analyses,
    api_events,
    api_evidence,
    api_recordings,
    api_reviews,
    api_sources,
    api_uploads,
    errors,
    health,
    incident_feed,
    metrics,
    session_ws,
    sio,
    video,
)
from bridge.frames import FrameHub
from bridge.metrics import HttpMetrics, Metrics
from bridge.redis_bindings import RedisBindings
from bridge.security import Guard
from bridge.session_names import MemoryBindings, SessionBindings
from bridge.settings import BridgeSettings
from bridge.state import BridgeState
from vigil.core.channels import GATEWAY_KEEPALIVE_TIME_S, GATEWAY_KEEPALIVE_TIMEOUT_S
from vigil.sdk import AsyncAnalyzerClient, AsyncDetectorClient, ClientOptions, with_tls

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).parent / "static"


def client_options(address: str, settings: BridgeSettings) -> ClientOptions:
    """How the bridge reaches a backend: the token passed on, the API's deadline on unary calls,
    keepalive quick enough that a backend that froze (or whose host vanished) fails its open
    streams within about 10 s, and gRPC's reconnect backoff capped near the hub's own, so that a
    restarted backend is found as quickly as the hub looks for it."""
    token = settings.token.get_secret_value() if settings.token is not None else None
    options = ClientOptions(
        address,
        token=token,
        timeout_s=settings.rpc_timeout_s,
        keepalive_time_s=GATEWAY_KEEPALIVE_TIME_S,
        keepalive_timeout_s=GATEWAY_KEEPALIVE_TIMEOUT_S,
        reconnect_initial_s=settings.retry_initial_s,
        reconnect_max_s=settings.retry_max_s,
    )
    return with_tls(options, settings.backend_tls)


class RevalidatedStatic(StaticFiles):
    """Static files a browser must revalidate (a cheap 304 by ETag) before each use: the page is
    a set of ES modules, and a browser caching them on its own could mix an old module with a new
    one after an upgrade and fail to start."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def index_html(settings: BridgeSettings) -> str:
    """The page, told the reconnect policy it follows as data attributes on its <body>
    (js/reconnect.js reads them; without them it keeps its own defaults, the same as the
    settings')."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    policy = (
        f'<body data-reconnect-tries="{settings.reconnect_tries}"'
        f' data-reconnect-initial-ms="{round(settings.reconnect_initial_s * 1000)}">'
    )
    if page.count("<body>") != 1:
        raise RuntimeError("bridge/static/index.html must have exactly one plain <body> tag")
    return page.replace("<body>", policy)


DESCRIPTION = """\
The bridge is the only thing a browser talks to: HTTP and WebSocket here, gRPC behind.

**Errors** are JSON `{"code", "message"}` everywhere; statuses come from one gRPC -> HTTP table
(`vigil.core.errors`). **Token**: when `VIGIL_BRIDGE_TOKEN` is set, send `Authorization: Bearer
<token>` (WebSockets: that header or `?token=`); `/health` and the page are public.

**WebSockets** (not listed below, as OpenAPI cannot describe them):

* `/ws/video-stream[/{source_id}]?extras=detections,sequence,dropped,latency&format=json|binary`:
  live frames. JSON: `{"type": "frame", "data": <base64 JPEG>, "timestamp": <s>}` (+ extras).
  Binary (`format=binary`): 4-byte big-endian header length N, N bytes of UTF-8 JSON header
  `{"type": "frame", "timestamp", "sequence", ...extras}`, then the JPEG bytes. Errors are JSON
  text `{"type": "error", "code", "message"}` in both formats.
* `/ws/session`: `{"event": NAME, "data": {...}}` both ways. Client: `join_session` {job_id |
  session_id, after_sequence?}, `leave_session`, `ping`, `chat` {question}. Server:
  `session_joined`, `analysis_progress` {percent, stage, message}, `long_video_detected`,
  `ai_thinking`, `analysis_complete` {result, timings}, `chat_response` ({delta, done: false}
  pieces, then {done: true, text, cited_times}), `error` {code, message}, `pong`. Job events
  carry `sequence`; rejoin with `after_sequence` for no duplicates.
* `/socket.io`: the same session events over Socket.IO.
* `/ws/incidents`: the page's live feed, JSON `{"type": "incident", "event":
  "opened"|"closed"|"reviewed", "incident", "snapshot"}`, `{"type": "source_event", "event",
  "snapshot"}` (snapshots base64 JPEG), `{"type": "gap", "dropped"}` after a slow reader lost its
  oldest, `{"type": "error"}`.

Limits: incoming WebSocket messages over the size limit close with 1009, over the rate with 1008;
too many sockets from one address close with 1013; uploads over the limit get 413.
"""


def create_app(settings: BridgeSettings) -> FastAPI:
    app_metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        detector = AsyncDetectorClient(client_options(settings.detector_address, settings))
        analyzer = AsyncAnalyzerClient(client_options(settings.analyzer_address, settings))
        frames = FrameHub(
            detector, queue_size=settings.viewer_queue, backoff=settings.retry_backoff
        )
        redis_url = settings.redis_url.get_secret_value()
        sessions: SessionBindings = RedisBindings(redis_url) if redis_url else MemoryBindings()
        app.state.vigil = BridgeState(settings, detector, analyzer, frames, app_metrics, sessions)
        log.info(
            "bridge: detector at %s, analyzer at %s",
            settings.detector_address,
            settings.analyzer_address,
        )
        try:
            yield
        finally:
            await frames.close()
            await sessions.close()
            await detector.close()
            await analyzer.close()

    app = FastAPI(
        title="Vigil bridge",
        summary="Browser gateway to Vigil's detector and analyzer services.",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
    )
    app.state.metrics = app_metrics
    errors.install(app)
    # Added innermost first: HttpMetrics(CORS(Guard(routes))). CORS answers pre-flights before
    # the token is asked for (they never carry it); disallowed origins get no CORS headers and
    # their pre-flights a 400. Credentials are never allowed: the token is a header, not a cookie.
    app.add_middleware(Guard, settings=settings, metrics=app_metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(HttpMetrics, metrics=app_metrics)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(api_uploads.router)
    app.include_router(api_analyses.router)
    app.include_router(api_sources.router)
    app.include_router(api_recordings.router)
    app.include_router(api_evidence.router)
    app.include_router(api_events.router)
    app.include_router(api_reviews.router)
    app.include_router(video.router)
    app.include_router(session_ws.router)
    app.include_router(incident_feed.router)
    sio.mount(app, settings)
    app.mount("/static", RevalidatedStatic(directory=STATIC_DIR), name="static")

    page = index_html(settings)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    return app
