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

from vigil.core.errors import VigilError
from vigil.sdk.errors import from_rpc_error

T = TypeVar("T")
M = TypeVar("M", covariant=True)


class SyncCall(Protocol[M]):
    def __iter__(self) -> Iterator[M]: ...
    def cancel(self) -> bool: ...


class AsyncCall(Protocol[M]):
    def __aiter__(self) -> AsyncIterator[M]: ...
    def cancel(self) -> bool: ...


class _Stream(Generic[T]):
    """What both flavours share: converting messages, cancelling, and telling the end of a call
    cancelled by its owner from a failure."""

    def __init__(
        self, call: SyncCall[Any] | AsyncCall[Any], convert: Callable[[Any], T | None]
    ) -> None:
        self.call = call
        self._convert = convert
        self._cancelled = False

    def _failure(self, exc: grpc.RpcError) -> VigilError | None:
        """The error to raise for ``exc``; None when the owner cancelled the call."""
        if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
            return None
        return from_rpc_error(exc)

    def cancel(self) -> None:
        self._cancelled = True
        self.call.cancel()


class Stream(_Stream[T]):
    """A blocking server stream."""

    call: SyncCall[Any]

    def __init__(self, call: SyncCall[Any], convert: Callable[[Any], T | None]) -> None:
        super().__init__(call, convert)
        self._messages = iter(call)

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        while True:
            try:
                message = next(self._messages)
            except grpc.RpcError as exc:
                if (error := self._failure(exc)) is None:
                    raise StopIteration from None
                raise error from exc
            # Messages this SDK does not know (a newer service) are skipped, not failed on.
            item = self._convert(message)
            if item is not None:
                return item

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class AsyncStream(_Stream[T]):
    """A server stream for ``async for``."""

    call: AsyncCall[Any]

    def __init__(self, call: AsyncCall[Any], convert: Callable[[Any], T | None]) -> None:
        super().__init__(call, convert)
        self._messages = call.__aiter__()

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            try:
                message = await self._messages.__anext__()
            except grpc.RpcError as exc:
                if (error := self._failure(exc)) is None:
                    raise StopAsyncIteration from None
                raise error from exc
            except asyncio.CancelledError:
                # grpc.aio reports a call cancelled by its owner this way; the task itself was
                # not cancelled unless the owner did not cancel the call.
                if self._cancelled:
                    raise StopAsyncIteration from None
                raise
            item = self._convert(message)
            if item is not None:
                return item

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
