"""Server streams as plain iterators of SDK values, with gRPC errors turned into domain errors.

A stream is also a context manager: leaving the block (or calling ``cancel``) ends the call on
the server too, which matters for subscriptions since the service captures only while somebody
listens. A stream cancelled by its own caller simply ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import grpc

from vigil.sdk.errors import from_rpc_error

T = TypeVar("T")
M = TypeVar("M", covariant=True)


class _SyncCall(Protocol[M]):
    def __iter__(self) -> Iterator[M]: ...
    def cancel(self) -> bool: ...


class _AsyncCall(Protocol[M]):
    def __aiter__(self) -> AsyncIterator[M]: ...
    def cancel(self) -> bool: ...


class Stream(Generic[T]):
    """A blocking server stream."""

    def __init__(self, call: _SyncCall[Any], convert: Callable[[Any], T | None]) -> None:
        self.call = call
        self._messages = iter(call)
        self._convert = convert
        self._cancelled = False

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                message = next(self._messages)
            except grpc.RpcError as exc:
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    raise StopIteration from None
                raise from_rpc_error(exc) from exc
            # Messages this SDK does not know (a newer service) are skipped, not failed on.
            item = self._convert(message)
            if item is not None:
                return item

    def cancel(self) -> None:
        self._cancelled = True
        self.call.cancel()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class AsyncStream(Generic[T]):
    """A server stream for ``async for``."""

    def __init__(self, call: _AsyncCall[Any], convert: Callable[[Any], T | None]) -> None:
        self.call = call
        self._messages = call.__aiter__()
        self._convert = convert
        self._cancelled = False

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            try:
                message = await self._messages.__anext__()
            except grpc.RpcError as exc:
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    raise StopAsyncIteration from None
                raise from_rpc_error(exc) from exc
            except asyncio.CancelledError:
                # grpc.aio reports a call cancelled by its owner this way; the task itself was
                # not cancelled unless the owner did not cancel the call.
                if self._cancelled:
                    raise StopAsyncIteration from None
                raise
            item = self._convert(message)
            if item is not None:
                return item

    def cancel(self) -> None:
        self._cancelled = True
        self.call.cancel()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
