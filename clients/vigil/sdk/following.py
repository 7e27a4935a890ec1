"""Following a detector replica's answer "the source is run by the replica at host:port".

Detector replicas share their sources (each run by one replica, ``detector_service/ownership.py``);
a replica asked about a source another one runs ends the call with UNAVAILABLE whose
``ErrorInfo.metadata`` names the ``owner``. The SDK makes the same call there, on a channel per
owner kept for the client's life (same TLS, token and deadlines; no health checking, since the
address is one replica). A stream is followed only before its first message: once frames flowed,
its end is the caller's to see (the source moved because its replica died or handed it over).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from vigil.core.errors import VigilError
from vigil.sdk.options import ClientOptions, open_aio_channel, open_channel
from vigil.sdk.streams import AsyncCall, AsyncStream, Stream, SyncCall

T = TypeVar("T")
C = TypeVar("C", grpc.Channel, grpc.aio.Channel)
OWNER_KEY = "owner"
# A source moving again while a call follows it: give up after this many hops.
MAX_HOPS = 3


def owner_of(error: VigilError) -> str | None:
    """The address of the replica that runs what ``error``'s call was about, if it says so."""
    return error.metadata.get(OWNER_KEY) if error.code == "UNAVAILABLE" else None


class Owners(Generic[C]):
    """One channel per owner replica (and per kind: live frames or other calls)."""

    def __init__(
        self,
        options: ClientOptions,
        service: str,
        unary_methods: Sequence[str],
        opener: Callable[..., C],
    ) -> None:
        self.options = options
        self._service = service
        self._unary_methods = unary_methods
        self._open: Callable[..., C] = opener
        self.channels: dict[tuple[str, bool], C] = {}

    def channel(self, address: str, *, live: bool = False) -> C:
        key = (address, live)
        if key not in self.channels:
            options = dataclasses.replace(self.options, address=address, health_checked=False)
            methods = () if live else self._unary_methods
            self.channels[key] = self._open(options, self._service, methods, live=live)
        return self.channels[key]


def sync_owners(options: ClientOptions, service: str, methods: Sequence[str]) -> Owners[Any]:
    return Owners(options, service, methods, open_channel)


def aio_owners(options: ClientOptions, service: str, methods: Sequence[str]) -> Owners[Any]:
    return Owners(options, service, methods, open_aio_channel)


def ready_wait(address: str | None, wait_for_ready: bool | None) -> bool | None:
    """``wait_for_ready`` for a call made at ``address`` (None: the client's own target).

    An owner's address never waits: the replica named may have just died (its lease not run out
    yet), and a stream waiting for it to come back would wait for ever. Failing at once lets the
    caller try again through its target, whose replicas name the new owner once one took over.
    """
    return wait_for_ready if address is None else False


def follow(call: Callable[[str | None], T]) -> T:
    """``call(None)`` (the client's own target), then ``call(owner)`` while answered with one."""
    address: str | None = None
    for hop in range(MAX_HOPS + 1):
        try:
            return call(address)
        except VigilError as exc:
            address = owner_of(exc)
            if address is None or hop == MAX_HOPS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def follow_async(call: Callable[[str | None], Awaitable[T]]) -> T:
    """As ``follow``, for awaitable calls."""
    address: str | None = None
    for hop in range(MAX_HOPS + 1):
        try:
            return await call(address)
        except VigilError as exc:
            address = owner_of(exc)
            if address is None or hop == MAX_HOPS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


class FollowingStream(Stream[T]):
    """A blocking stream that, answered with an owner before its first message, reopens there."""

    def __init__(
        self, open_at: Callable[[str | None], SyncCall[Any]], convert: Callable[[Any], T | None]
    ) -> None:
        super().__init__(open_at(None), convert)
        self._open_at = open_at
        self._hops = 0
        self._started = False

    def __next__(self) -> T:
        while True:
            try:
                item = super().__next__()
            except VigilError as exc:
                owner = owner_of(exc)
                if owner is None or self._started or self._cancelled or self._hops >= MAX_HOPS:
                    raise
                self._hops += 1
                self.call = self._open_at(owner)
                self._messages = iter(self.call)
                continue
            self._started = True
            return item


class AsyncFollowingStream(AsyncStream[T]):
    """As ``FollowingStream``, for ``async for``."""

    def __init__(
        self, open_at: Callable[[str | None], AsyncCall[Any]], convert: Callable[[Any], T | None]
    ) -> None:
        super().__init__(open_at(None), convert)
        self._open_at = open_at
        self._hops = 0
        self._started = False

    async def __anext__(self) -> T:
        while True:
            try:
                item = await super().__anext__()
            except VigilError as exc:
                owner = owner_of(exc)
                if owner is None or self._started or self._cancelled or self._hops >= MAX_HOPS:
                    raise
                self._hops += 1
                self.call = self._open_at(owner)
                self._messages = self.call.__aiter__()
                continue
            self._started = True
            return item
