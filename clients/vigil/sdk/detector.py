"""Clients of the detector service: ``DetectorClient`` (blocking) and ``AsyncDetectorClient``.

Both speak the same methods and return the same plain values; unary calls carry the default
deadline and are retried on UNAVAILABLE by gRPC itself; every call carries the bearer token.
Subscriptions run on a channel of their own tuned for live frames (see ``vigil.channels``) so
that the small flow-control window they need does not slow ``detect`` down.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

import grpc

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.errors import InvalidInput
from vigil.sdk.common import Page, timestamp
from vigil.sdk.detector_types import (
    SOURCE_KINDS,
    DetectFrame,
    DetectResult,
    Frame,
    Incident,
    IncidentEvent,
    Source,
    SubscriptionItems,
)
from vigil.sdk.errors import from_rpc_error
from vigil.sdk.options import (
    ClientOptions,
    as_options,
    open_aio_channel,
    open_channel,
    wait_ready,
    wait_ready_async,
)
from vigil.sdk.streams import AsyncStream, Stream

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub

SERVICE = pb.DESCRIPTOR.services_by_name["DetectorService"].full_name
UNARY_METHODS = ("AddSource", "RemoveSource", "GetSource", "ListSources", "ListIncidents")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def detect_request(
    frame: DetectFrame | bytes, sequence: int, annotate: bool, source_id: str
) -> pb.DetectRequest:
    if isinstance(frame, bytes):
        frame = DetectFrame(frame)
    return pb.DetectRequest(
        source_id=frame.source_id or source_id,
        sequence=sequence if frame.sequence is None else frame.sequence,
        capture_time=timestamp(frame.timestamp),
        jpeg=frame.jpeg,
        annotate=annotate if frame.annotate is None else frame.annotate,
    )


def source_spec(
    source_id: str,
    kind: str,
    uri: str,
    *,
    loop: bool,
    max_fps: float,
    width: int,
    height: int,
    display_name: str,
) -> pb.SourceSpec:
    if kind not in SOURCE_KINDS:
        raise InvalidInput(f"unknown source kind {kind!r}; one of {', '.join(SOURCE_KINDS)}")
    return pb.SourceSpec(
        id=source_id,
        kind=SOURCE_KINDS[kind],
        uri=uri,
        loop=loop,
        max_fps=max_fps,
        width=width,
        height=height,
        display_name=display_name,
    )


def incident_page(response: pb.ListIncidentsResponse) -> Page[Incident]:
    items = tuple(Incident.from_proto(m) for m in response.incidents)
    return Page(items, response.next_page_token)


class DetectorClient:
    """Blocking client; one per thread pool is plenty (gRPC channels are thread-safe)."""

    def __init__(self, target: str | ClientOptions) -> None:
        self.options = as_options(target)
        self._channel = open_channel(self.options, SERVICE, UNARY_METHODS)
        self._live: grpc.Channel | None = None
        self.stub = pb_grpc.DetectorServiceStub(self._channel)

    def _unary(
        self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req, timeout_s: float | None
    ) -> Resp:
        try:
            return method(
                request,
                timeout=self.options.deadline(timeout_s),
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the channel is connected; Unavailable after ``timeout_s``."""
        wait_ready(self._channel, timeout_s, self.options.address)

    def detect(
        self,
        frames: Iterable[DetectFrame | bytes],
        *,
        annotate: bool = False,
        source_id: str = "",
        timeout_s: float | None = None,
    ) -> Stream[DetectResult]:
        """Results for ``frames`` in the order sent, as they come; gRPC reads ``frames`` on a
        thread of its own, so a slow producer does not block the results already on their way."""
        numbers = itertools.count()
        requests = (detect_request(f, next(numbers), annotate, source_id) for f in frames)
        call = self.stub.Detect(
            requests,
            timeout=timeout_s,
            metadata=self.options.metadata,
            wait_for_ready=self.options.wait_for_ready,
        )
        return Stream(call, DetectResult.from_proto)

    def subscribe(self, source_id: str = "", *, omit_jpeg: bool = False) -> Stream[Frame | Source]:
        """Frames of a source, and the source itself (first, then on every state change).
        An empty id follows the service's default source."""
        if self._live is None:
            self._live = open_channel(self.options, SERVICE, (), live=True)
        stub = pb_grpc.DetectorServiceStub(self._live)
        request = pb.SubscribeRequest(source_id=source_id, omit_jpeg=omit_jpeg)
        call = stub.Subscribe(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return Stream(call, SubscriptionItems(source_id))

    def add_source(
        self,
        source_id: str,
        kind: str,
        uri: str = "",
        *,
        loop: bool = False,
        max_fps: float = 0.0,
        width: int = 0,
        height: int = 0,
        display_name: str = "",
        timeout_s: float | None = None,
    ) -> Source:
        """Register a source (``kind``: webcam, stream, file or test_pattern)."""
        spec = source_spec(
            source_id,
            kind,
            uri,
            loop=loop,
            max_fps=max_fps,
            width=width,
            height=height,
            display_name=display_name,
        )
        response = self._unary(self.stub.AddSource, pb.AddSourceRequest(source=spec), timeout_s)
        return Source.from_proto(response.source)

    def remove_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.RemoveSourceRequest(source_id=source_id)
        return Source.from_proto(self._unary(self.stub.RemoveSource, request, timeout_s).source)

    def get_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.GetSourceRequest(source_id=source_id)
        return Source.from_proto(self._unary(self.stub.GetSource, request, timeout_s).source)

    def list_sources(self, *, timeout_s: float | None = None) -> list[Source]:
        response = self._unary(self.stub.ListSources, pb.ListSourcesRequest(), timeout_s)
        return [Source.from_proto(m) for m in response.sources]

    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False
    ) -> Stream[IncidentEvent]:
        """Incident open and close events from now on (all sources when ``source_id`` is empty)."""
        request = pb.StreamIncidentsRequest(source_id=source_id, include_snapshot=include_snapshot)
        call = self.stub.StreamIncidents(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return Stream(call, IncidentEvent.from_proto)

    def list_incidents(
        self,
        source_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        include_snapshot: bool = False,
        timeout_s: float | None = None,
    ) -> Page[Incident]:
        """One page of the incident history, newest first."""
        request = pb.ListIncidentsRequest(
            source_id=source_id,
            page_size=page_size,
            page_token=page_token,
            include_snapshot=include_snapshot,
        )
        return incident_page(self._unary(self.stub.ListIncidents, request, timeout_s))

    def close(self) -> None:
        self._channel.close()
        if self._live is not None:
            self._live.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDetectorClient:
    """The asyncio client; create and use it on one event loop."""

    def __init__(self, target: str | ClientOptions) -> None:
        self.options = as_options(target)
        self._channel = open_aio_channel(self.options, SERVICE, UNARY_METHODS)
        self._live: grpc.aio.Channel | None = None
        self.stub: DetectorServiceAsyncStub = pb_grpc.DetectorServiceStub(self._channel)

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        timeout_s: float | None,
    ) -> Resp:
        try:
            return await method(
                request,
                timeout=self.options.deadline(timeout_s),
                metadata=self.options.metadata,
                wait_for_ready=self.options.wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def wait_until_ready(self, timeout_s: float) -> None:
        await wait_ready_async(self._channel, timeout_s, self.options.address)

    def detect(
        self,
        frames: AsyncIterable[DetectFrame | bytes] | Iterable[DetectFrame | bytes],
        *,
        annotate: bool = False,
        source_id: str = "",
        timeout_s: float | None = None,
    ) -> AsyncStream[DetectResult]:
        """Results for ``frames`` in the order sent; frames are sent as the iterable yields them
        while results are read, so a producer and a consumer can run at their own pace."""

        async def requests() -> AsyncIterator[pb.DetectRequest]:
            numbers = itertools.count()
            if isinstance(frames, AsyncIterable):
                async for frame in frames:
                    yield detect_request(frame, next(numbers), annotate, source_id)
            else:
                for frame in frames:
                    yield detect_request(frame, next(numbers), annotate, source_id)

        call = self.stub.Detect(
            requests(),
            timeout=timeout_s,
            metadata=self.options.metadata,
            wait_for_ready=self.options.wait_for_ready,
        )
        return AsyncStream(call, DetectResult.from_proto)

    def subscribe(
        self, source_id: str = "", *, omit_jpeg: bool = False
    ) -> AsyncStream[Frame | Source]:
        """Frames of a source, and the source itself (first, then on every state change)."""
        if self._live is None:
            self._live = open_aio_channel(self.options, SERVICE, (), live=True)
        stub: DetectorServiceAsyncStub = pb_grpc.DetectorServiceStub(self._live)
        request = pb.SubscribeRequest(source_id=source_id, omit_jpeg=omit_jpeg)
        call = stub.Subscribe(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return AsyncStream(call, SubscriptionItems(source_id))

    async def add_source(
        self,
        source_id: str,
        kind: str,
        uri: str = "",
        *,
        loop: bool = False,
        max_fps: float = 0.0,
        width: int = 0,
        height: int = 0,
        display_name: str = "",
        timeout_s: float | None = None,
    ) -> Source:
        spec = source_spec(
            source_id,
            kind,
            uri,
            loop=loop,
            max_fps=max_fps,
            width=width,
            height=height,
            display_name=display_name,
        )
        request = pb.AddSourceRequest(source=spec)
        return Source.from_proto(
            (await self._unary(self.stub.AddSource, request, timeout_s)).source
        )

    async def remove_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.RemoveSourceRequest(source_id=source_id)
        response = await self._unary(self.stub.RemoveSource, request, timeout_s)
        return Source.from_proto(response.source)

    async def get_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.GetSourceRequest(source_id=source_id)
        return Source.from_proto(
            (await self._unary(self.stub.GetSource, request, timeout_s)).source
        )

    async def list_sources(self, *, timeout_s: float | None = None) -> list[Source]:
        response = await self._unary(self.stub.ListSources, pb.ListSourcesRequest(), timeout_s)
        return [Source.from_proto(m) for m in response.sources]

    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False
    ) -> AsyncStream[IncidentEvent]:
        request = pb.StreamIncidentsRequest(source_id=source_id, include_snapshot=include_snapshot)
        call = self.stub.StreamIncidents(
            request, metadata=self.options.metadata, wait_for_ready=self.options.wait_for_ready
        )
        return AsyncStream(call, IncidentEvent.from_proto)

    async def list_incidents(
        self,
        source_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        include_snapshot: bool = False,
        timeout_s: float | None = None,
    ) -> Page[Incident]:
        request = pb.ListIncidentsRequest(
            source_id=source_id,
            page_size=page_size,
            page_token=page_token,
            include_snapshot=include_snapshot,
        )
        return incident_page(await self._unary(self.stub.ListIncidents, request, timeout_s))

    async def close(self) -> None:
        await self._channel.close(None)
        if self._live is not None:
            await self._live.close(None)

    async def __aenter__(self) -> AsyncDetectorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
