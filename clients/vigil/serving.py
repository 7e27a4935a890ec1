"""The one way Vigil's gRPC services start, report health and stop.

Every service is a ``grpc.aio`` server with the standard health service and reflection, bound to
the address its settings name (port 0 picks a free port, which tests use). ``run_forever`` installs
uvloop, marks the service NOT_SERVING on SIGTERM or SIGINT, lets in-flight calls drain for the
grace period and then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

# Sized for JPEG frames and upload chunks; larger messages get RESOURCE_EXHAUSTED from gRPC itself.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Service:
    """A running gRPC server plus the health state of the services it hosts."""

    def __init__(
        self,
        *,
        service_names: Sequence[str],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        interceptors: Iterable[grpc.aio.ServerInterceptor[Any, Any]] = (),
    ) -> None:
        self.server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # Streams of live frames can sit idle for a while; keep them from being reaped.
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
        )
        self.service_names = list(service_names)
        # The asyncio flavour of the standard health servicer; its stubs predate grpc.aio.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind, start serving, mark every hosted service SERVING; return the bound port."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {host}:{port}")
        await self.server.start()
        await self.set_serving(True)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Refuse new work (NOT_SERVING), let calls in flight finish for ``grace`` seconds."""
        await self.set_serving(False)
        await self.server.stop(grace)


def run_forever(
    main: Callable[[asyncio.Event], Awaitable[Any]],
) -> None:
    """Run ``main(stop_event)`` on uvloop; SIGTERM and SIGINT set the event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(runner())


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
