"""``AsyncDetectorClient``: the detector service's asyncio client.

Separate from the blocking ``DetectorClient`` (``vigil.sdk.detector``, which re-exports this one)
so that each flavour is one module; both speak the same methods, return the same plain values and
share their requests and conversions (``vigil.sdk.detector_requests``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, overload

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk.client import AsyncClient, invoke
from vigil.sdk.common import Page
from vigil.sdk.detector_requests import (
    SERVICE,
    UNARY_METHODS,
    add_source_request,
    add_source_spec_request,
    async_detect_requests,
    event_page,
    incident_page,
    incidents_request,
    list_events_request,
    list_incidents_request,
    source_of,
    sources_of,
    subscribe_request,
    update_source_request,
)
from vigil.sdk.detector_types import (
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
from vigil.sdk.evidence import AsyncEvidenceMethods
from vigil.sdk.following import (
    AsyncFollowingStream,
    aio_owners,
    follow_async,
    ready_wait,
)
from vigil.sdk.motion import MotionSettings
from vigil.sdk.options import ClientOptions
from vigil.sdk.recordings import AsyncRecordingMethods
from vigil.sdk.reviews import AsyncReviewMethods
from vigil.sdk.streams import AsyncCall, AsyncStream

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub


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
