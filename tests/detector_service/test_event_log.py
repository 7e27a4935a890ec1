"""The source-event log through the real service: events recorded as producers record them (any
thread), listed by ListEvents with its filters and pages, kept in a private file (both stores'
contract: ``test_event_stores.py``)."""

from __future__ import annotations

import asyncio
import stat
import threading
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.event_store import SQLiteEvents
from detector_service.server import DetectorServer
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

T0 = 1_700_000_000
ENTER, LEAVE = pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_ZONE_LEAVE
COVERED = pb.SOURCE_EVENT_KIND_CAMERA_COVERED


def event(source_id: str, kind: pb.SourceEventKind.ValueType, at_s: int) -> pb.SourceEvent:
    return pb.SourceEvent(
        source_id=source_id, kind=kind, at=Timestamp(seconds=T0 + at_s), zone="door"
    )


async def record_all(detector: DetectorServer, events: list[tuple[pb.SourceEvent, bytes]]) -> None:
    """Record from another thread, as the processing and health threads do."""

    def produce() -> None:
        for e in events:
            detector.events.record(*e)

    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.to_thread(thread.join)


async def listed(stub: Stub, **request: object) -> pb.ListEventsResponse:
    return await stub.ListEvents(pb.ListEventsRequest(**request))  # type: ignore[arg-type]


async def test_filters_pages_and_snapshots(detector: DetectorServer, detector_stub: Stub) -> None:
    await record_all(
        detector,
        [(event("a", ENTER, s), b"\xff\xd8%d" % s) for s in range(5)]
        + [(event("b", COVERED, 2), b""), (event("a", LEAVE, 9), b"\xff\xd8leave")],
    )

    everything = await listed(detector_stub)
    assert [(e.source_id, e.at.seconds - T0) for e in everything.events] == [
        ("a", 9), ("a", 4), ("a", 3), ("b", 2), ("a", 2), ("a", 1), ("a", 0),
    ]  # fmt: skip
    assert all(len(e.id) == 32 and not e.snapshot_jpeg for e in everything.events)
    assert [e.has_snapshot for e in everything.events] == [True] * 3 + [False] + [True] * 3

    only_b = await listed(detector_stub, source_id="b")
    assert [e.kind for e in only_b.events] == [COVERED]
    leaves = await listed(detector_stub, kinds=[LEAVE, COVERED])
    assert [e.kind for e in leaves.events] == [LEAVE, COVERED]
    window = await listed(
        detector_stub, start=Timestamp(seconds=T0 + 1), end=Timestamp(seconds=T0 + 3)
    )
    assert [e.at.seconds - T0 for e in window.events] == [2, 2, 1]
    # Bounds beyond what nanoseconds since 1970 hold in 64 bits (year 2262) mean "no bound".
    far = await listed(detector_stub, end=Timestamp(seconds=253402300799), source_id="b")
    assert [e.kind for e in far.events] == [COVERED]
    with_snapshots = await listed(
        detector_stub, source_id="a", kinds=[LEAVE], include_snapshot=True
    )
    assert with_snapshots.events[0].snapshot_jpeg == b"\xff\xd8leave"

    pages, token = [], ""
    while True:
        page = await listed(detector_stub, source_id="a", page_size=2, page_token=token)
        pages.append([e.at.seconds - T0 for e in page.events])
        if not (token := page.next_page_token):
            break
    assert pages == [[9, 4], [3, 2], [1, 0]]


async def test_a_bad_page_token_is_refused(detector_stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await listed(detector_stub, page_token="bm9wZQ==")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_log_is_private(detector: DetectorServer) -> None:
    store = detector.events.store
    assert isinstance(store, SQLiteEvents)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.path.parent == detector.incidents.config.db_path.parent


async def test_a_stuck_subscriber_loses_the_oldest_events(detector: DetectorServer) -> None:
    detector.events.subscriber_queue = 3
    sub = detector.events.subscribe("a")
    await record_all(detector, [(event("a", ENTER, s), b"") for s in range(5)])
    await asyncio.sleep(0)  # the fan-outs, queued on the loop before this, run first
    assert sub.dropped == 2
    got = [await anext(sub) for _ in range(3)]
    sub.close()
    assert [m.event.at.seconds - T0 for m in got] == [2, 3, 4]
    assert all(m.type == pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT for m in got)
