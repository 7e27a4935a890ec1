"""The bridge's ASGI app: browsers speak HTTP and WebSocket here, the services behind speak gRPC.

``create_app(settings)`` builds the app; its lifespan opens one ``grpc.aio`` channel per backend
(channels connect lazily and reconnect by themselves, so the bridge starts whether or not the
backends are up) and closes them on shutdown. Routes live in small modules, one per concern.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator

import grpc
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from bridge import health, video
from bridge.frames import FrameHub
from bridge.settings import BridgeSettings
from bridge.state import BridgeState
from vigil.serving import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

STATIC_DIR = pathlib.Path(__file__).parent / "static"


def open_channel(address: str, settings: BridgeSettings) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
            # gRPC's own reconnect backoff grows to 120 s by default; cap it near ours so a
            # restarted backend is found as quickly as the hub looks for it.
            ("grpc.initial_reconnect_backoff_ms", int(settings.retry_initial_s * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(settings.retry_max_s * 1000)),
            # Notice a backend that vanished without closing its sockets (host down, NAT).
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ],
    )


def create_app(settings: BridgeSettings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        detector = open_channel(settings.detector_address, settings)
        analyzer = open_channel(settings.analyzer_address, settings)
        frames = FrameHub(
            detector,
            queue_size=settings.viewer_queue,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
        )
        app.state.vigil = BridgeState(settings, detector, analyzer, frames)
        log.info(
            "bridge: detector at %s, analyzer at %s",
            settings.detector_address,
            settings.analyzer_address,
        )
        try:
            yield
        finally:
            await frames.close()
            await detector.close(None)
            await analyzer.close(None)

    app = FastAPI(
        title="Vigil bridge",
        summary="Browser gateway to Vigil's detector and analyzer services.",
        lifespan=lifespan,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.include_router(health.router)
    app.include_router(video.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app
