"""Incidents a SIGKILLed detector replica left open: the replica that takes its source over closes
them, at the takeover, and streams their CLOSED events."""

from __future__ import annotations

import asyncio
import pathlib
import time
import uuid

import grpc
import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.incidents.postgres_store import PostgresIncidentStore
from tests.detector_service.replicas import Replicas, owners, running, spawn, until
from tests.detector_service.test_incident_replicas import WAIT_S, following
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

CLOSED = pb.INCIDENT_EVENT_TYPE_CLOSED


def left_open(url: str, replica: str) -> pb.Incident:
    """An incident of ``default`` saved open by ``replica``, through the store it writes with."""
    opened = Timestamp()
    opened.FromNanoseconds(time.time_ns())
    incident = pb.Incident(
        id=uuid.uuid4().hex, source_id="default", class_name="knife", opened_at=opened
    )
    store = PostgresIncidentStore(url, replica=replica)
    try:
        store.save(incident).result(WAIT_S)
    finally:
        store.close()
    return incident


def closed_ns(url: str, incident_id: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT closed_ns FROM detector_incidents WHERE id = %s", (incident_id,)
        ).fetchone()
    assert row is not None
    return None if row[0] is None else int(row[0])


async def test_the_new_owner_closes_what_a_killed_replica_left_open(
    start: Replicas, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    process, _port = await asyncio.to_thread(spawn, tmp_path, postgres_url, "a")
    try:
        await until(lambda: owners(postgres_url) == {"default": "a"}, "a owning default")
        incident = left_open(postgres_url, "a")
        b = await start("b")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as channel,
            following(pb_grpc.DetectorServiceStub(channel)) as got,
        ):
            killed_ns = time.time_ns()
            process.kill()
            await until(lambda: running(b) == {"default"}, "b taking default over")
            while True:
                event = await asyncio.wait_for(got.get(), WAIT_S)
                if event.incident.id == incident.id:
                    break
            assert event.type == CLOSED
            assert event.incident.closed_at.ToNanoseconds() >= killed_ns
        at = closed_ns(postgres_url, incident.id)
        assert at is not None
        assert at == event.incident.closed_at.ToNanoseconds()
    finally:
        process.kill()
        process.wait()


def saved_open(store: PostgresIncidentStore, opened_ns: int) -> str:
    opened = Timestamp()
    opened.FromNanoseconds(opened_ns)
    incident = pb.Incident(
        id=uuid.uuid4().hex, source_id="default", class_name="knife", opened_at=opened
    )
    store.save(incident).result(WAIT_S)
    return incident.id


def test_left_open_means_by_another_replica_or_by_this_one_before_it_restarted(
    postgres_url: str,
) -> None:
    earlier = PostgresIncidentStore(postgres_url, replica="a")
    dead = PostgresIncidentStore(postgres_url, replica="dead")
    try:
        before_restart = saved_open(earlier, time.time_ns())
        by_dead = saved_open(dead, time.time_ns())
    finally:
        earlier.close()
        dead.close()
    store = PostgresIncidentStore(postgres_url, replica="a")  # a, restarted
    try:
        own = saved_open(store, time.time_ns())
        closed = store.close_left_open("default", time.time_ns()).result(WAIT_S)
        assert sorted(i.id for i in closed) == sorted([before_restart, by_dead])
        assert all(i.HasField("closed_at") for i in closed)
        assert closed_ns(postgres_url, own) is None
        # Closed once: a second takeover finds nothing left open.
        assert store.close_left_open("default", time.time_ns()).result(WAIT_S) == []
    finally:
        store.close()
