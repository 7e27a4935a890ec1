"""What only the PostgreSQL incident store does: events one replica streams reach the others'
streams (LISTEN/NOTIFY says there is one, the row is read from the table), each once and in order,
also across a lost connection; a review made on another replica rides on the open incident's
later events; and each replica retries the verification of its own incidents."""

from __future__ import annotations

import asyncio
import pathlib
import queue
from collections.abc import Iterator

import psycopg
import pytest

from detector_service.incidents.config import IncidentConfig
from detector_service.incidents.postgres_store import WATCHER_NAME, PostgresIncidentStore
from detector_service.incidents.tracker import IncidentTracker
from tests.detector_service.incidents.helpers import Camera, det, frame_jpeg
from tests.detector_service.incidents.test_store import incident
from vigil.detector.v1 import detector_service_pb2 as pb

WAIT_S = 60.0
OPENED = pb.INCIDENT_EVENT_TYPE_OPENED
CLOSED = pb.INCIDENT_EVENT_TYPE_CLOSED
REVIEWED = pb.INCIDENT_EVENT_TYPE_REVIEWED
Events = queue.Queue[pb.StreamIncidentsResponse]


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[PostgresIncidentStore, PostgresIncidentStore]]:
    a = PostgresIncidentStore(postgres_url, replica="a", pool_size=2)
    b = PostgresIncidentStore(postgres_url, replica="b", pool_size=2)
    yield a, b
    a.close()  # again after a tracker closed it: nothing left to do
    b.close()


def watching(store: PostgresIncidentStore) -> Events:
    got: Events = queue.Queue()
    store.watch(got.put)
    return got


def event(kind: pb.IncidentEventType.ValueType, found: pb.Incident) -> pb.StreamIncidentsResponse:
    return pb.StreamIncidentsResponse(type=kind, incident=found, alert=kind == OPENED)


def watchers(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (WATCHER_NAME,)
        ).fetchall()
    return {int(row[0]) for row in rows}


def test_an_event_reaches_the_other_replicas_not_its_own(
    replicas: tuple[PostgresIncidentStore, PostgresIncidentStore],
) -> None:
    a, b = replicas
    on_a, on_b = watching(a), watching(b)
    opened = incident(1)
    a.save(opened)
    a.announce(event(OPENED, opened))
    got = on_b.get(timeout=WAIT_S)
    # The snapshot comes from the incident's row: the event's row holds the message only.
    assert got == event(OPENED, opened)
    assert got.incident.snapshot_jpeg == frame_jpeg(1)
    reviewed = incident(1)
    reviewed.review.decision = pb.REVIEW_DECISION_CONFIRMED
    b.announce(event(REVIEWED, reviewed))
    assert on_a.get(timeout=WAIT_S) == event(REVIEWED, reviewed)
    # Neither heard its own.
    b.announce(event(CLOSED, reviewed))
    assert on_a.get(timeout=WAIT_S).type == CLOSED
    assert on_a.empty()
    assert on_b.empty()


async def test_a_watcher_that_lost_its_connection_catches_up_without_doubles(
    replicas: tuple[PostgresIncidentStore, PostgresIncidentStore], postgres_url: str
) -> None:
    a, b = replicas
    on_b = watching(b)
    before = watchers(postgres_url)
    assert len(before) == 1
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(before),)
        )
    # Announced while b's watcher is away (it waits a second before connecting again).
    for n in range(5):
        a.save(incident(n))
        a.announce(event(OPENED, incident(n)))
    got = [(await asyncio.to_thread(on_b.get, timeout=WAIT_S)).incident.id for _ in range(5)]
    assert got == [incident(n).id for n in range(5)]
    # Back on a new connection, and nothing more came.
    assert watchers(postgres_url).isdisjoint(before)
    a.announce(event(CLOSED, incident(4)))
    assert (await asyncio.to_thread(on_b.get, timeout=WAIT_S)).type == CLOSED
    assert on_b.empty()


async def test_each_replica_retries_the_verification_of_its_own_incidents(
    replicas: tuple[PostgresIncidentStore, PostgresIncidentStore],
) -> None:
    a, b = replicas
    a.save(incident(1))
    b.save(incident(2))
    assert await a.opened_since(0) == [incident(1)]
    assert await b.opened_since(0) == [incident(2)]
    # Both list both: one shared history.
    for store in (a, b):
        found, _ = await store.list("", 10, "", include_snapshot=False)
        assert {i.id for i in found} == {incident(1).id, incident(2).id}


async def test_a_review_made_on_another_replica_rides_on_the_open_incidents_events(
    replicas: tuple[PostgresIncidentStore, PostgresIncidentStore],
) -> None:
    a, b = replicas
    loop = asyncio.get_running_loop()
    config = IncidentConfig(db_path=pathlib.Path("unused"), min_frames=1, window=1)
    owner, other = IncidentTracker(config, a, loop), IncidentTracker(config, b, loop)
    try:
        await asyncio.to_thread(a.watch, owner.relay)
        on_owner = owner.subscribe()
        cam = Camera(owner)
        cam.frame(det("knife"))  # opens on the owner
        opened = await asyncio.wait_for(anext(on_owner), WAIT_S)
        assert opened.type == OPENED
        # Streamed here before it is saved: kept once a read on the owner's store returns.
        assert await a.get(opened.incident.id) is not None
        # Reviewed through the other replica, as ReviewIncident does there.
        decision = pb.Review(decision=pb.REVIEW_DECISION_DISMISSED, note="a phone")
        assert await asyncio.wrap_future(b.review(opened.incident.id, decision))
        found = await b.get(opened.incident.id)
        assert found is not None
        other.publish(REVIEWED, found)
        reviewed = await asyncio.wait_for(anext(on_owner), WAIT_S)
        assert (reviewed.type, reviewed.incident.review) == (REVIEWED, decision)
        # The owner's later event (the close) carries the review too.
        cam.skip(config.close_after_s + 1)
        cam.frame()
        closed = await asyncio.wait_for(anext(on_owner), WAIT_S)
        assert closed.type == CLOSED
        assert closed.incident.review == decision
        assert closed.incident.false_alarm
    finally:
        await asyncio.to_thread(owner.close)
        await asyncio.to_thread(other.close)
