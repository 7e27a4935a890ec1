"""Clients of the detector service: ``DetectorClient`` (blocking) and ``AsyncDetectorClient``.

Both speak the same methods and return the same plain values; unary calls carry the default
deadline and are retried on UNAVAILABLE by gRPC itself; every call carries the bearer token.
The recording's calls (coverage, export, snapshot) are in ``vigil.sdk.recordings``.
Subscriptions run on a channel of their own tuned for live frames (see ``vigil.core.channels``) so
that the small flow-control window they need does not slow ``detect`` down.

This module holds the blocking client and re-exports the asyncio one (``vigil.sdk.detector_async``);
requests are built and responses converted in ``vigil.sdk.detector_requests``, which both share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, overload

from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk.client import Client, invoke
from vigil.sdk.common import Page
from vigil.sdk.detector_async import AsyncDetectorClient
from vigil.sdk.detector_requests import (
    SERVICE,
    UNARY_METHODS,
    add_source_request,
    add_source_spec_request,
    detect_requests,
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
from vigil.sdk.evidence import EvidenceMethods
from vigil.sdk.following import (
    FollowingStream,
    follow,
    ready_wait,
    sync_owners,
)
from vigil.sdk.motion import MotionSettings
from vigil.sdk.options import ClientOptions
from vigil.sdk.recordings import RecordingMethods
from vigil.sdk.reviews import ReviewMethods
from vigil.sdk.streams import Stream, SyncCall

__all__ = ["AsyncDetectorClient", "DetectorClient"]


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
