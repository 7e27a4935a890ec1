"""Clients of the detector service: ``DetectorClient`` (blocking) and ``AsyncDetectorClient``.

Both speak the same methods and return the same plain values; unary calls carry the default
deadline and are retried on UNAVAILABLE by gRPC itself; every call carries the bearer token.
The recording's calls (coverage, export, snapshot) are in ``vigil.sdk.recordings``.
Subscriptions run on a channel of their own tuned for live frames (see ``vigil.core.channels``) so
that the small flow-control window they need does not slow ``detect`` down.

Requests are built and responses converted by the functions below, which both flavours share.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal, overload

from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk.client import AsyncClient, Client, invoke
from vigil.sdk.common import Page, timestamp
from vigil.sdk.detector_types import (
    SOURCE_EVENT_KINDS,
    SOURCE_KINDS,
    SOURCE_MODES,
    DetectFrame,
    DetectResult,
    Frame,
    Incident,
    IncidentEvent,
    Source,
    SourceEvent,
    SourceSpec,
    SubscriptionItems,
    incident_item,
)
from vigil.sdk.evidence import AsyncEvidenceMethods, EvidenceMethods
from vigil.sdk.following import (
    AsyncFollowingStream,
    FollowingStream,
    aio_owners,
    follow,
    follow_async,
    ready_wait,
    sync_owners,
)
from vigil.sdk.motion import MotionSettings
from vigil.sdk.options import ClientOptions
from vigil.sdk.recordings import UNARY_METHODS as RECORDING_UNARY_METHODS
from vigil.sdk.recordings import AsyncRecordingMethods, RecordingMethods
from vigil.sdk.reviews import UNARY_METHODS as REVIEW_UNARY_METHODS
from vigil.sdk.reviews import AsyncReviewMethods, ReviewMethods
from vigil.sdk.streams import AsyncCall, AsyncStream, Stream, SyncCall

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub

SERVICE = pb.DESCRIPTOR.services_by_name["DetectorService"].full_name
UNARY_METHODS = (
    "AddSource", "RemoveSource", "GetSource", "ListSources", "ListIncidents", "UpdateSource",
    "ListEvents", *RECORDING_UNARY_METHODS, *REVIEW_UNARY_METHODS,
)  # fmt: skip

SourceResponse = (
    pb.AddSourceResponse | pb.RemoveSourceResponse | pb.GetSourceResponse | pb.UpdateSourceResponse
)


def detect_request(
    frame: DetectFrame | bytes, sequence: int, annotate: bool, source_id: str, track: bool = False
) -> pb.DetectRequest:
    if isinstance(frame, bytes):
        frame = DetectFrame(frame)
    return pb.DetectRequest(
        source_id=frame.source_id or source_id,
        sequence=sequence if frame.sequence is None else frame.sequence,
        capture_time=timestamp(frame.timestamp),
        jpeg=frame.jpeg,
        annotate=annotate if frame.annotate is None else frame.annotate,
        track=track,
    )


def detect_requests(
    frames: Iterable[DetectFrame | bytes], annotate: bool, source_id: str, track: bool = False
) -> Iterator[pb.DetectRequest]:
    """Requests for ``frames``, numbered in the order sent (where a frame has no number)."""
    return (detect_request(f, n, annotate, source_id, track) for n, f in enumerate(frames))


async def async_detect_requests(
    frames: AsyncIterable[DetectFrame | bytes] | Iterable[DetectFrame | bytes],
    annotate: bool,
    source_id: str,
    track: bool = False,
) -> AsyncIterator[pb.DetectRequest]:
    if not isinstance(frames, AsyncIterable):
        for request in detect_requests(frames, annotate, source_id, track):
            yield request
        return
    numbers = itertools.count()
    async for frame in frames:
        yield detect_request(frame, next(numbers), annotate, source_id, track)


def add_source_request(
    source_id: str,
    kind: str,
    uri: str,
    loop: bool,
    max_fps: float,
    width: int,
    height: int,
    display_name: str,
    mode: str,
    record_uri: str,
    ptz: bool = False,
    motion: MotionSettings | None = None,
) -> pb.AddSourceRequest:
    if kind not in SOURCE_KINDS:
        raise InvalidInput(f"unknown source kind {kind!r}; one of {', '.join(SOURCE_KINDS)}")
    if mode and mode not in SOURCE_MODES:
        raise InvalidInput(f"unknown source mode {mode!r}; one of {', '.join(SOURCE_MODES)}")
    spec = pb.SourceSpec(
        id=source_id,
        kind=SOURCE_KINDS[kind],
        uri=uri,
        loop=loop,
        max_fps=max_fps,
        width=width,
        height=height,
        display_name=display_name,
        mode=SOURCE_MODES[mode] if mode else pb.SOURCE_MODE_UNSPECIFIED,
        record_uri=record_uri,
        ptz=ptz,
        motion=motion.to_proto() if motion is not None else None,
    )
    return pb.AddSourceRequest(source=spec)


def subscribe_request(source_id: str, omit_jpeg: bool, main_stream: bool) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(source_id=source_id, omit_jpeg=omit_jpeg, main_stream=main_stream)


def incidents_request(
    source_id: str, include_snapshot: bool, include_events: bool = False
) -> pb.StreamIncidentsRequest:
    return pb.StreamIncidentsRequest(
        source_id=source_id, include_snapshot=include_snapshot, include_events=include_events
    )


def add_source_spec_request(spec: SourceSpec) -> pb.AddSourceRequest:
    try:
        return pb.AddSourceRequest(source=spec.to_proto())
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def update_source_request(spec: SourceSpec) -> pb.UpdateSourceRequest:
    try:
        return pb.UpdateSourceRequest(source=spec.to_proto())
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def list_events_request(
    source_id: str,
    start: float | None,
    end: float | None,
    kinds: Sequence[str],
    page_size: int,
    page_token: str,
    include_snapshot: bool,
) -> pb.ListEventsRequest:
    unknown = [k for k in kinds if k not in SOURCE_EVENT_KINDS]
    if unknown:
        raise InvalidInput(
            f"unknown event kinds {unknown}; of {', '.join(SOURCE_EVENT_KINDS)}", field="kinds"
        )
    request = pb.ListEventsRequest(
        source_id=source_id,
        kinds=[SOURCE_EVENT_KINDS[k] for k in kinds],
        page_size=page_size,
        page_token=page_token,
        include_snapshot=include_snapshot,
    )
    if start is not None:
        request.start.CopyFrom(timestamp(start))
    if end is not None:
        request.end.CopyFrom(timestamp(end))
    return request


def event_page(response: pb.ListEventsResponse) -> Page[SourceEvent]:
    return Page(tuple(SourceEvent.from_proto(m) for m in response.events), response.next_page_token)


def list_incidents_request(
    source_id: str, page_size: int, page_token: str, include_snapshot: bool
) -> pb.ListIncidentsRequest:
    return pb.ListIncidentsRequest(
        source_id=source_id,
        page_size=page_size,
        page_token=page_token,
        include_snapshot=include_snapshot,
    )


def source_of(response: SourceResponse) -> Source:
    return Source.from_proto(response.source)


def sources_of(response: pb.ListSourcesResponse) -> list[Source]:
    return [Source.from_proto(m) for m in response.sources]


def incident_page(response: pb.ListIncidentsResponse) -> Page[Incident]:
    items = tuple(Incident.from_proto(m) for m in response.incidents)
    return Page(items, response.next_page_token)


class DetectorClient(RecordingMethods, EvidenceMethods, ReviewMethods, Client):
    """Blocking client; one per thread pool is plenty (gRPC channels are thread-safe)."""

    def __init__(self, target: str | ClientOptions) -> None:
        super().__init__(target, SERVICE, UNARY_METHODS)
        self.stub = pb_grpc.DetectorServiceStub(self._channel)
        # Replicas that run a source another replica sent a call to (vigil.sdk.following).
        self._owners = sync_owners(self.options, SERVICE, UNARY_METHODS)

    def _stub_at(self, address: str | None) -> pb_grpc.DetectorServiceStub:
        if address is None:
            return self.stub
        stub: pb_grpc.DetectorServiceStub = pb_grpc.DetectorServiceStub(
            self._owners.channel(address)
        )
        return stub

    def close(self) -> None:
        super().close()
        for channel in self._owners.channels.values():
            channel.close()

    def detect(
        self,
        frames: Iterable[DetectFrame | bytes],
        *,
        annotate: bool = False,
        source_id: str = "",
        track: bool = False,
        timeout_s: float | None = None,
    ) -> Stream[DetectResult]:
        """Results for ``frames`` in the order sent, as they come; gRPC reads ``frames`` on a
        thread of its own, so a slow producer does not block the results already on their way.

        ``track`` gives detections a ``track_id`` per stream (the frames' ``source_id``, which
        it requires), in the order of the frames' timestamps."""
        requests = detect_requests(frames, annotate, source_id, track)
        return self._stream(self.stub.Detect, requests, DetectResult.from_proto, timeout_s)

    def subscribe(
        self,
        source_id: str = "",
        *,
        omit_jpeg: bool = False,
        main_stream: bool = False,
        wait_for_ready: bool | None = None,
    ) -> Stream[Frame | Source]:
        """Frames of a source, and the source itself (first, then on every state change).
        An empty id follows the service's default source. ``main_stream``: frames of the camera's
        main stream (its record_uri) at full size, with the detection stream's boxes scaled onto
        them (ignored for a source without one). ``wait_for_ready`` (the client's
        setting unless given) makes the call wait for a service that is not up yet; a caller
        that resubscribes after an outage wants that once it has told its users."""
        request = subscribe_request(source_id, omit_jpeg, main_stream)

        def open_at(address: str | None) -> SyncCall[pb.SubscribeResponse]:
            channel = (
                self._live_channel()
                if address is None
                else self._owners.channel(address, live=True)
            )
            stub = pb_grpc.DetectorServiceStub(channel)
            return invoke(
                self.options,
                stub.Subscribe,
                request,
                None,
                wait_for_ready=ready_wait(address, wait_for_ready),
            )

        return FollowingStream(open_at, SubscriptionItems(source_id))

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
        mode: str = "",
        record_uri: str = "",
        ptz: bool = False,
        motion: MotionSettings | None = None,
        timeout_s: float | None = None,
    ) -> Source:
        """Register a source (``kind``: webcam, stream, file or test_pattern), kept by the
        service across restarts. ``mode`` "always" captures and analyses it with nobody watching,
        "on_demand" only while subscribed; empty takes the kind's default (always for webcams and
        streams). ``record_uri``: a stream's main stream, stored for recording. ``ptz``: the
        camera pans, tilts or zooms on purpose, so a changed scene is not reported as moved.
        ``motion``: how motion gates its detector (None: the service's defaults)."""
        request = add_source_request(
            source_id, kind, uri, loop, max_fps, width, height, display_name, mode, record_uri, ptz,
            motion,
        )  # fmt: skip
        return self._unary(self.stub.AddSource, request, timeout_s, source_of)

    def remove_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.RemoveSourceRequest(source_id=source_id)
        return follow(
            lambda at: self._unary(self._stub_at(at).RemoveSource, request, timeout_s, source_of)
        )

    def get_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.GetSourceRequest(source_id=source_id)
        return follow(
            lambda at: self._unary(self._stub_at(at).GetSource, request, timeout_s, source_of)
        )

    def list_sources(self, *, timeout_s: float | None = None) -> list[Source]:
        return self._unary(self.stub.ListSources, pb.ListSourcesRequest(), timeout_s, sources_of)

    @overload
    def incidents(
        self,
        source_id: str = "",
        *,
        include_snapshot: bool = False,
        include_events: Literal[False] = False,
    ) -> Stream[IncidentEvent]: ...
    @overload
    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False, include_events: bool
    ) -> Stream[IncidentEvent | SourceEvent]: ...
    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False, include_events: bool = False
    ) -> Stream[IncidentEvent] | Stream[IncidentEvent | SourceEvent]:
        """Incident open and close events from now on (all sources when ``source_id`` is empty);
        with ``include_events`` also the sources' zone and camera-health events."""
        request = incidents_request(source_id, include_snapshot, include_events)
        items: Stream[IncidentEvent | SourceEvent] = self._stream(
            self.stub.StreamIncidents, request, incident_item
        )
        return items

    def add_source_spec(self, spec: SourceSpec, *, timeout_s: float | None = None) -> Source:
        """Register a source from a whole spec (zones, motion, watch rules and all), kept by the
        service across restarts; ``add_source`` for the common fields."""
        request = add_source_spec_request(spec)
        return self._unary(self.stub.AddSource, request, timeout_s, source_of)

    def update_source(self, spec: SourceSpec, *, timeout_s: float | None = None) -> Source:
        """Replace a source's spec (its kind may not change); kept across restarts. The capture
        restarts only when a stream setting changed; zones apply at once::

            spec = client.get_source("gate").spec
            client.update_source(dataclasses.replace(spec, zones=(Zone.line(...),)))
        """
        request = update_source_request(spec)
        return follow(
            lambda at: self._unary(self._stub_at(at).UpdateSource, request, timeout_s, source_of)
        )

    def list_events(
        self,
        source_id: str = "",
        *,
        start: float | None = None,
        end: float | None = None,
        kinds: Sequence[str] = (),
        page_size: int = 0,
        page_token: str = "",
        include_snapshot: bool = False,
        timeout_s: float | None = None,
    ) -> Page[SourceEvent]:
        """One page of the zone and camera-health events, newest first, at or after ``start``
        and before ``end`` (seconds since the epoch), of the ``kinds`` given (all when empty)."""
        request = list_events_request(
            source_id, start, end, kinds, page_size, page_token, include_snapshot
        )
        return self._unary(self.stub.ListEvents, request, timeout_s, event_page)

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
        request = list_incidents_request(source_id, page_size, page_token, include_snapshot)
        return self._unary(self.stub.ListIncidents, request, timeout_s, incident_page)


class AsyncDetectorClient(
    AsyncRecordingMethods, AsyncEvidenceMethods, AsyncReviewMethods, AsyncClient
):
    """The asyncio client; create and use it on one event loop."""

    name = "detector"

    def __init__(self, target: str | ClientOptions) -> None:
        super().__init__(target, SERVICE, UNARY_METHODS)
        self.stub: DetectorServiceAsyncStub = pb_grpc.DetectorServiceStub(self._channel)
        self._owners = aio_owners(self.options, SERVICE, UNARY_METHODS)

    def _stub_at(self, address: str | None) -> DetectorServiceAsyncStub:
        if address is None:
            return self.stub
        stub: DetectorServiceAsyncStub = pb_grpc.DetectorServiceStub(self._owners.channel(address))
        return stub

    async def close(self) -> None:
        await super().close()
        for channel in self._owners.channels.values():
            await channel.close(None)

    def detect(
        self,
        frames: AsyncIterable[DetectFrame | bytes] | Iterable[DetectFrame | bytes],
        *,
        annotate: bool = False,
        source_id: str = "",
        track: bool = False,
        timeout_s: float | None = None,
    ) -> AsyncStream[DetectResult]:
        """Results for ``frames`` in the order sent; frames are sent as the iterable yields them
        while results are read, so a producer and a consumer can run at their own pace.
        ``track``: as for ``DetectorClient.detect``."""
        requests = async_detect_requests(frames, annotate, source_id, track)
        return self._stream(self.stub.Detect, requests, DetectResult.from_proto, timeout_s)

    def subscribe(
        self,
        source_id: str = "",
        *,
        omit_jpeg: bool = False,
        main_stream: bool = False,
        wait_for_ready: bool | None = None,
    ) -> AsyncStream[Frame | Source]:
        """Frames of a source, and the source itself (first, then on every state change);
        ``main_stream`` as in the sync client."""
        request = subscribe_request(source_id, omit_jpeg, main_stream)

        def open_at(address: str | None) -> AsyncCall[pb.SubscribeResponse]:
            channel = (
                self._live_channel()
                if address is None
                else self._owners.channel(address, live=True)
            )
            stub: DetectorServiceAsyncStub = pb_grpc.DetectorServiceStub(channel)
            return invoke(
                self.options,
                stub.Subscribe,
                request,
                None,
                wait_for_ready=ready_wait(address, wait_for_ready),
            )

        return AsyncFollowingStream(open_at, SubscriptionItems(source_id))

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
        mode: str = "",
        record_uri: str = "",
        ptz: bool = False,
        motion: MotionSettings | None = None,
        timeout_s: float | None = None,
    ) -> Source:
        request = add_source_request(
            source_id, kind, uri, loop, max_fps, width, height, display_name, mode, record_uri, ptz,
            motion,
        )  # fmt: skip
        return await self._unary(self.stub.AddSource, request, timeout_s, source_of)

    async def remove_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.RemoveSourceRequest(source_id=source_id)
        return await follow_async(
            lambda at: self._unary(self._stub_at(at).RemoveSource, request, timeout_s, source_of)
        )

    async def get_source(self, source_id: str, *, timeout_s: float | None = None) -> Source:
        request = pb.GetSourceRequest(source_id=source_id)
        return await follow_async(
            lambda at: self._unary(self._stub_at(at).GetSource, request, timeout_s, source_of)
        )

    async def list_sources(self, *, timeout_s: float | None = None) -> list[Source]:
        request = pb.ListSourcesRequest()
        return await self._unary(self.stub.ListSources, request, timeout_s, sources_of)

    @overload
    def incidents(
        self,
        source_id: str = "",
        *,
        include_snapshot: bool = False,
        include_events: Literal[False] = False,
    ) -> AsyncStream[IncidentEvent]: ...
    @overload
    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False, include_events: bool
    ) -> AsyncStream[IncidentEvent | SourceEvent]: ...
    def incidents(
        self, source_id: str = "", *, include_snapshot: bool = False, include_events: bool = False
    ) -> AsyncStream[IncidentEvent] | AsyncStream[IncidentEvent | SourceEvent]:
        request = incidents_request(source_id, include_snapshot, include_events)
        items: AsyncStream[IncidentEvent | SourceEvent] = self._stream(
            self.stub.StreamIncidents, request, incident_item
        )
        return items

    async def add_source_spec(self, spec: SourceSpec, *, timeout_s: float | None = None) -> Source:
        request = add_source_spec_request(spec)
        return await self._unary(self.stub.AddSource, request, timeout_s, source_of)

    async def update_source(self, spec: SourceSpec, *, timeout_s: float | None = None) -> Source:
        request = update_source_request(spec)
        return await follow_async(
            lambda at: self._unary(self._stub_at(at).UpdateSource, request, timeout_s, source_of)
        )

    async def list_events(
        self,
        source_id: str = "",
        *,
        start: float | None = None,
        end: float | None = None,
        kinds: Sequence[str] = (),
        page_size: int = 0,
        page_token: str = "",
        include_snapshot: bool = False,
        timeout_s: float | None = None,
    ) -> Page[SourceEvent]:
        request = list_events_request(
            source_id, start, end, kinds, page_size, page_token, include_snapshot
        )
        return await self._unary(self.stub.ListEvents, request, timeout_s, event_page)

    async def list_incidents(
        self,
        source_id: str = "",
        *,
        page_size: int = 0,
        page_token: str = "",
        include_snapshot: bool = False,
        timeout_s: float | None = None,
    ) -> Page[Incident]:
        request = list_incidents_request(source_id, page_size, page_token, include_snapshot)
        return await self._unary(self.stub.ListIncidents, request, timeout_s, incident_page)
