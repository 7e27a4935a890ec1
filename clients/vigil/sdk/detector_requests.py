"""The detector service's requests and responses as the SDK's clients build and read them.

Separate from the clients because both flavours, ``DetectorClient`` (blocking, in
``vigil.sdk.detector``) and ``AsyncDetectorClient`` (``vigil.sdk.detector_async``), share these:
the service's name and its unary methods (retried, deadlined), the request builders and the
conversions of responses into the SDK's plain values.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import Page, timestamp
from vigil.sdk.detector_types import (
    SOURCE_EVENT_KINDS,
    SOURCE_KINDS,
    SOURCE_MODES,
    DetectFrame,
    Incident,
    Source,
    SourceEvent,
    SourceSpec,
)
from vigil.sdk.motion import MotionSettings
from vigil.sdk.recordings import UNARY_METHODS as RECORDING_UNARY_METHODS
from vigil.sdk.reviews import UNARY_METHODS as REVIEW_UNARY_METHODS

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
