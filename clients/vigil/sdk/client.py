"""What the clients of both services share: channels, the options every call carries, domain
errors for unary calls, stream wrapping, readiness and closing.

Every call is started by ``invoke``, so the deadline, the bearer token and ``wait_for_ready`` are
set in one place; a blocking and an asyncio client differ only in awaiting a unary result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vigil.sdk.errors import mapped_errors
from vigil.sdk.options import (
    ClientOptions,
    as_options,
    connect_async,
    open_aio_channel,
    open_channel,
    wait_ready,
    wait_ready_async,
)
from vigil.sdk.streams import AsyncCall, AsyncStream, Stream, SyncCall

C = TypeVar("C")
Resp = TypeVar("Resp")
T = TypeVar("T")

# Turns a response message into the SDK value a method returns.
Convert = Callable[[Resp], T]
# Turns a stream message into an SDK value; None skips it.
ConvertItem = Callable[[Any], T | None]


def invoke(
    options: ClientOptions,
    method: Callable[..., C],
    request: object,
    timeout_s: float | None,
    metadata: tuple[tuple[str, str], ...] = (),
    wait_for_ready: bool | None = None,
) -> C:
    """Start a call with the client's metadata (and ``metadata``) and ``wait_for_ready`` (the
    client's unless given); ``timeout_s`` None: no deadline."""
    return method(
        request,
        timeout=timeout_s,
        metadata=options.metadata + metadata,
        wait_for_ready=options.wait_for_ready if wait_for_ready is None else wait_for_ready,
    )


def health_request(service: str | None, default: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=default if service is None else service)


def serving_status(response: health_pb2.HealthCheckResponse) -> str:
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


class Client:
    """Base of the blocking clients; gRPC channels are thread-safe, so threads may share one."""

    def __init__(
        self, target: str | ClientOptions, service: str, unary_methods: Sequence[str]
    ) -> None:
        self.options = as_options(target)
        self._service = service
        self._channel = open_channel(self.options, service, unary_methods)
        self._live: grpc.Channel | None = None
        self._probe: grpc.Channel | None = None

    def _probe_channel(self) -> grpc.Channel:
        """A channel without health checking, opened on first use: asking a NOT_SERVING
        service for its health, or whether it is up, must reach it."""
        if self._probe is None:
            self._probe = open_channel(self.options, self._service, (), health_checked=False)
        return self._probe

    def _live_channel(self) -> grpc.Channel:
        """A channel of its own for live frames, opened on first use (``vigil.core.channels``)."""
        if self._live is None:
            self._live = open_channel(self.options, self._service, (), live=True)
        return self._live

    def _call(self, method: Callable[..., Resp], request: object, timeout_s: float | None) -> Resp:
        """A call whose gRPC errors become domain errors; ``timeout_s`` is used as given."""
        with mapped_errors():
            return invoke(self.options, method, request, timeout_s)

    def _unary(
        self,
        method: Callable[..., Resp],
        request: object,
        timeout_s: float | None,
        convert: Convert[Resp, T],
    ) -> T:
        """A unary call under the default deadline unless ``timeout_s`` names one."""
        return convert(self._call(method, request, self.options.deadline(timeout_s)))

    def _stream(
        self,
        method: Callable[..., SyncCall[Any]],
        request: object,
        convert: ConvertItem[T],
        timeout_s: float | None = None,
        wait_for_ready: bool | None = None,
    ) -> Stream[T]:
        call = invoke(self.options, method, request, timeout_s, wait_for_ready=wait_for_ready)
        return Stream(call, convert)

    def health(self, service: str | None = None, *, timeout_s: float | None = None) -> str:
        """The standard gRPC health of ``service`` (this client's service unless named; "" for
        the whole server): SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN. A server that does
        not host ``service`` raises NotFound. Health is never retried: it reports what is now."""
        stub = health_pb2_grpc.HealthStub(self._probe_channel())
        request = health_request(service, self._service)
        return self._unary(stub.Check, request, timeout_s, serving_status)

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the channel is connected; Unavailable after ``timeout_s``."""
        wait_ready(self._probe_channel(), timeout_s, self.options.address)

    def close(self) -> None:
        self._channel.close()
        for channel in (self._live, self._probe):
            if channel is not None:
                channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """Base of the asyncio clients; create and use one on one event loop."""

    # What the service is, for people ("the detector at ... refused the connection").
    name = "service"

    def __init__(
        self, target: str | ClientOptions, service: str, unary_methods: Sequence[str]
    ) -> None:
        self.options = as_options(target)
        self._service = service
        self._channel = open_aio_channel(self.options, service, unary_methods)
        self._live: grpc.aio.Channel | None = None
        self._probe: grpc.aio.Channel | None = None

    def _probe_channel(self) -> grpc.aio.Channel:
        """As ``Client._probe_channel``."""
        if self._probe is None:
            self._probe = open_aio_channel(self.options, self._service, (), health_checked=False)
        return self._probe

    def _live_channel(self) -> grpc.aio.Channel:
        """A channel of its own for live frames, opened on first use (``vigil.core.channels``)."""
        if self._live is None:
            self._live = open_aio_channel(self.options, self._service, (), live=True)
        return self._live

    async def _call(
        self, method: Callable[..., Awaitable[Resp]], request: object, timeout_s: float | None
    ) -> Resp:
        """A call whose gRPC errors become domain errors; ``timeout_s`` is used as given."""
        with mapped_errors():
            return await invoke(self.options, method, request, timeout_s)

    async def _unary(
        self,
        method: Callable[..., Awaitable[Resp]],
        request: object,
        timeout_s: float | None,
        convert: Convert[Resp, T],
    ) -> T:
        """A unary call under the default deadline unless ``timeout_s`` names one."""
        return convert(await self._call(method, request, self.options.deadline(timeout_s)))

    def _stream(
        self,
        method: Callable[..., AsyncCall[Any]],
        request: object,
        convert: ConvertItem[T],
        timeout_s: float | None = None,
        wait_for_ready: bool | None = None,
    ) -> AsyncStream[T]:
        call = invoke(self.options, method, request, timeout_s, wait_for_ready=wait_for_ready)
        return AsyncStream(call, convert)

    async def health(self, service: str | None = None, *, timeout_s: float | None = None) -> str:
        """As ``Client.health``."""
        stub = health_pb2_grpc.HealthStub(self._probe_channel())
        request = health_request(service, self._service)
        return await self._unary(stub.Check, request, timeout_s, serving_status)

    async def connect(self, timeout_s: float) -> None:
        """Connect now: Unavailable at once when the service refuses the connection, or after
        ``timeout_s`` when nothing answers. For callers that would rather go without the service
        than have a call wait out its whole deadline on an address that swallows packets."""
        await connect_async(self._probe_channel(), timeout_s, self.options.address, self.name)

    async def wait_until_ready(self, timeout_s: float) -> None:
        """Wait until the channel is connected; Unavailable after ``timeout_s``."""
        await wait_ready_async(self._probe_channel(), timeout_s, self.options.address)

    async def close(self) -> None:
        await self._channel.close(None)
        for channel in (self._live, self._probe):
            if channel is not None:
                await channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
