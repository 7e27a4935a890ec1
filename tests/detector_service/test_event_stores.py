"""The event-log store contract, run against both stores: SQLite in a file and PostgreSQL (a real
server, one fresh database per test): filters, pages newest first, snapshots only when asked,
events from many threads all kept, what survives reopening, retention. With PostgreSQL the events
one replica records reach the other replicas' streams, each once."""

from __future__ import annotations

import asyncio
import pathlib
import threading
import time
from collections.abc import Iterator

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.event_store import EventKeeping, SQLiteEvents
from detector_service.events import EventLog
from detector_service.postgres_events import PostgresEvents
from tests.detector_service.store_pool import StorePool, opened_stores
from vigil.detector.v1 import detector_service_pb2 as pb

T0 = 1_700_000_000
DAY_S = 86400.0
ENTER, LEAVE = pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_ZONE_LEAVE
COVERED = pb.SOURCE_EVENT_KIND_CAMERA_COVERED
WAIT_S = 60.0


Stores = StorePool[EventKeeping]


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Stores]:
    path = tmp_path / "data" / "events.sqlite3"

    def sqlite(replica: str = "a", retention_s: float = 10_000 * DAY_S) -> EventKeeping:
        return SQLiteEvents(path, retention_s)

    def postgres(url: str, replica: str = "a", retention_s: float = 10_000 * DAY_S) -> EventKeeping:
        return PostgresEvents(url, replica=replica, retention_s=retention_s)

    yield from opened_stores(request, sqlite, postgres)


def event(source_id: str, kind: pb.SourceEventKind.ValueType, at_s: int) -> pb.SourceEvent:
    return pb.SourceEvent(
        source_id=source_id, kind=kind, at=Timestamp(seconds=T0 + at_s), zone="door"
    )


async def listed(store: EventKeeping, **request: object) -> pb.ListEventsResponse:
    return await store.list(pb.ListEventsRequest(**request))  # type: ignore[arg-type]


async def test_filters_pages_and_snapshots(stores: Stores) -> None:
    store = stores.open()
    log = EventLog(store, asyncio.get_running_loop())

    def produce() -> None:  # from another thread, as the processing threads record
        for s in range(5):
            log.record(event("a", ENTER, s), b"\xff\xd8%d" % s)
        log.record(event("b", COVERED, 2), b"")
        log.record(event("a", LEAVE, 9), b"\xff\xd8leave")

    thread = threading.Thread(target=produce)
    thread.start()
    await asyncio.to_thread(thread.join)

    everything = await listed(store)
    assert [(e.source_id, e.at.seconds - T0) for e in everything.events] == [
        ("a", 9), ("a", 4), ("a", 3), ("b", 2), ("a", 2), ("a", 1), ("a", 0),
    ]  # fmt: skip
    assert all(len(e.id) == 32 and not e.snapshot_jpeg for e in everything.events)
    assert [e.has_snapshot for e in everything.events] == [True] * 3 + [False] + [True] * 3
    assert [e.kind for e in (await listed(store, source_id="b")).events] == [COVERED]
    leaves = await listed(store, kinds=[LEAVE, COVERED])
    assert [e.kind for e in leaves.events] == [LEAVE, COVERED]
    window = await listed(store, start=Timestamp(seconds=T0 + 1), end=Timestamp(seconds=T0 + 3))
    assert [e.at.seconds - T0 for e in window.events] == [2, 2, 1]
    far = await listed(store, end=Timestamp(seconds=253402300799), source_id="b")
    assert [e.kind for e in far.events] == [COVERED]
    snapshots = await listed(store, source_id="a", kinds=[LEAVE], include_snapshot=True)
    assert snapshots.events[0].snapshot_jpeg == b"\xff\xd8leave"

    pages, token = [], ""
    while True:
        page = await listed(store, source_id="a", page_size=2, page_token=token)
        pages.append([e.at.seconds - T0 for e in page.events])
        if not (token := page.next_page_token):
            break
    assert pages == [[9, 4], [3, 2], [1, 0]]
    with pytest.raises(ValueError, match="page token"):
        await listed(store, page_token="bm9wZQ==")


async def test_events_survive_reopening_and_expire_after_their_retention(stores: Stores) -> None:
    now = int(time.time())
    old = pb.SourceEvent(id="old", source_id="a", kind=ENTER, at=Timestamp(seconds=now - 2 * 86400))
    recent = pb.SourceEvent(id="new", source_id="a", kind=LEAVE, at=Timestamp(seconds=now - 3600))
    store = stores.open()
    store.insert(old, b"\xff\xd8old")
    store.insert(recent, None)
    await asyncio.to_thread(stores.close, store)
    kept = stores.open("b")
    assert [e.id for e in (await listed(kept)).events] == ["new", "old"]
    await asyncio.to_thread(stores.close, kept)
    # Deleted when a store opens (and hourly while it runs).
    pruned = stores.open("a", retention_s=DAY_S)
    assert [e.id for e in (await listed(pruned)).events] == ["new"]


async def test_events_recorded_on_one_replica_stream_on_the_others_once(postgres_url: str) -> None:
    loop = asyncio.get_running_loop()
    a = PostgresEvents(postgres_url, replica="a", retention_s=DAY_S)
    b = PostgresEvents(postgres_url, replica="b", retention_s=DAY_S)
    log_a, log_b = EventLog(a, loop), EventLog(b, loop)
    try:
        await asyncio.to_thread(a.watch, log_a.relay)
        await asyncio.to_thread(b.watch, log_b.relay)
        on_a = log_a.subscribe(include_snapshot=True)
        on_b = log_b.subscribe("cam", include_snapshot=True)
        log_a.record(event("cam", ENTER, 1), b"\xff\xd8enter")
        log_b.record(event("cam", LEAVE, 2), None)
        got_a = [await asyncio.wait_for(anext(on_a), WAIT_S) for _ in range(2)]
        got_b = [await asyncio.wait_for(anext(on_b), WAIT_S) for _ in range(2)]
        # Each replica's own event at once, the other's through the database; none twice.
        assert sorted(m.event.kind for m in got_a) == sorted(m.event.kind for m in got_b)
        assert sorted(m.event.kind for m in got_a) == sorted([ENTER, LEAVE])
        entered = next(m for m in got_b if m.event.kind == ENTER)
        assert entered.event.snapshot_jpeg == b"\xff\xd8enter"
        log_a.record(event("cam", COVERED, 3), None)
        assert (await asyncio.wait_for(anext(on_b), WAIT_S)).event.kind == COVERED
        assert (await asyncio.wait_for(anext(on_a), WAIT_S)).event.kind == COVERED
        # Nothing doubled: the next event each sees is the next one recorded.
        log_b.record(event("cam", ENTER, 4), None)
        for sub in (on_a, on_b):
            assert (await asyncio.wait_for(anext(sub), WAIT_S)).event.at.seconds == T0 + 4
    finally:
        await asyncio.to_thread(log_a.close)
        await asyncio.to_thread(log_b.close)
