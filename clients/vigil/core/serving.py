"""The one way Vigil's gRPC services start, report health and stop.

Every service is a ``grpc.aio`` server with the standard health service and reflection, bound to
the address its settings name (port 0 picks a free port, which tests use). A ``VigilError`` raised
by any method ends its call with the error's rich status (``ErrorStatus``). ``run_forever`` installs
uvloop, marks the service NOT_SERVING on SIGTERM or SIGINT, lets in-flight calls drain for the
grace period and then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import SecretStr

from vigil.core.channels import MAX_MESSAGE_BYTES
from vigil.core.errors import Unauthenticated, VigilError, abort_with
from vigil.core.settings import GrpcServiceSettings
from vigil.core.tls import TlsServerFiles, server_credentials

log = logging.getLogger(__name__)

# Larger messages get RESOURCE_EXHAUSTED from gRPC itself; clients are sized the same.
DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES
# Services any caller may use without the token: liveness probes and service discovery.
OPEN_SERVICE_PREFIXES = (f"/{health.SERVICE_NAME}/", "/grpc.reflection.")
UNAUTHENTICATED_MESSAGE = "a valid bearer token is required"


def _bearer(value: str | bytes | None) -> bytes | None:
    if isinstance(value, str):
        value = value.encode()
    if not value:
        return None
    scheme, _, token = value.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every call needs ``authorization: Bearer <token>`` metadata, except the health and
    reflection services; a missing or wrong token ends the call with UNAUTHENTICATED before the
    method runs. The comparison takes constant time and the token is never logged."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the token must not be empty")
        self._expected = token.encode()

    def allowed(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        if method.startswith(OPEN_SERVICE_PREFIXES):
            return True
        presented = _bearer(next((v for k, v in metadata or () if k == "authorization"), None))
        # compare_digest over equal-length digests: no early exit, no length leak.
        return presented is not None and hmac.compare_digest(
            hashlib.sha256(presented).digest(), hashlib.sha256(self._expected).digest()
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata
        if handler is None or self.allowed(handler_call_details.method, metadata):
            return handler
        return _refusing(handler)


def _refusing(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that ends the call with UNAUTHENTICATED."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await abort_with(context, Unauthenticated(UNAUTHENTICATED_MESSAGE))

    return _same_shape(handler, refuse)


Behaviour = Callable[..., Any]


def _same_shape(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: Behaviour
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler running ``behaviour`` with the streaming shape and serializers of ``handler``."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behaviour, **serializers)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviour, **serializers)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behaviour, **serializers)
    return grpc.unary_unary_rpc_method_handler(behaviour, **serializers)


def _behaviour(handler: grpc.RpcMethodHandler[Any, Any]) -> Behaviour:
    if handler.request_streaming and handler.response_streaming:
        return handler.stream_stream  # type: ignore[return-value]
    if handler.request_streaming:
        return handler.stream_unary  # type: ignore[return-value]
    if handler.response_streaming:
        return handler.unary_stream  # type: ignore[return-value]
    return handler.unary_unary  # type: ignore[return-value]


class ErrorStatus(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A ``VigilError`` escaping any method ends its call with the error's rich status
    (``vigil.core.errors.rich_status``), so servicers simply raise. Streaming methods written as
    async generators and those writing through the context are both covered."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        behaviour = _behaviour(handler)
        if inspect.isasyncgenfunction(behaviour):

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                try:
                    async for response in behaviour(request, context):
                        yield response
                except VigilError as exc:
                    await abort_with(context, exc)

            return _same_shape(handler, stream)

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except VigilError as exc:
                await abort_with(context, exc)

        return _same_shape(handler, call)


def auth_interceptors(token: SecretStr | str | None) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
    """The server interceptors enforcing ``token``; none when no token is configured."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    return [TokenAuth(token)] if token else []


def bearer_metadata(token: SecretStr | str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata presenting ``token`` to a service enforcing ``TokenAuth``."""
    if isinstance(token, SecretStr):
        token = token.get_secret_value()
    return (("authorization", f"Bearer {token}"),) if token else ()


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
            # ErrorStatus first, so it also covers what the other interceptors refuse.
            interceptors=[ErrorStatus(), *interceptors],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # Streams of live frames can sit idle for a while; keep them from being reaped.
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                # gRPC 1.85 times keepalive pings with this one (60 s unless set): a subscriber
                # that vanished without closing is reaped within ~30 s.
                ("grpc.http2.ping_timeout_ms", 10_000),
                ("grpc.http2.max_pings_without_data", 0),
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
        self.health_port: int | None = None
        self._health_server: grpc.aio.Server | None = None

    async def start_with(self, settings: GrpcServiceSettings) -> int:
        """``start`` where ``settings`` say (address, TLS, health port)."""
        return await self.start(
            settings.host, settings.port, settings.tls, health_port=settings.health_port
        )

    async def start(
        self,
        host: str,
        port: int,
        tls: TlsServerFiles | None = None,
        *,
        health_port: int | None = None,
    ) -> int:
        """Bind, start serving, mark every hosted service SERVING; return the bound port.

        With ``tls`` the port serves TLS only (mutual TLS when it names a client CA), from files
        reread when they change; TlsConfigError when they are not usable. ``health_port`` (0:
        a free one, then ``self.health_port``) also serves the health service alone, in
        plaintext, for probes that cannot speak TLS."""
        if health_port is not None:
            self._health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            self.health_port = self._health_server.add_insecure_port(f"{host}:{health_port}")
            if self.health_port == 0:
                raise OSError(f"cannot bind the health port {host}:{health_port}")
        address = f"{host}:{port}"
        if tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, server_credentials(tls))
            log.info("serving %s from %s", "mutual TLS" if tls.mutual else "TLS", tls.cert)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {host}:{port}")
        await self.server.start()
        if self._health_server is not None:
            await self._health_server.start()
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
        # Last: probes see NOT_SERVING while the calls drain.
        if self._health_server is not None:
            await self._health_server.stop(0)


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
