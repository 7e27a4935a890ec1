"""Incidents and events made while PostgreSQL is away are kept and written once it is back: all of
them, once each, in order, and streamed live through another replica."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import psycopg
import pytest

from tests.detector_service.replicas import Replicas, running, until
from tests.detector_service.test_incident_replicas import (
    OPENED,
    WAIT_S,
    first_streamed,
    following,
    gate_entered,
    open_incident,
)
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.devtools.postgres import PostgresServer

CLOSED = pb.INCIDENT_EVENT_TYPE_CLOSED
SOURCE_EVENT = pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT


def stored(url: str) -> tuple[dict[str, bool], dict[str, int], dict[str, int]]:
    """Per incident: closed or not; announcements kept; and source events kept, per id."""
    with psycopg.connect(url) as conn:
        closed = conn.execute("SELECT id, closed_ns IS NOT NULL FROM detector_incidents")
        incidents = {str(i): bool(c) for i, c in closed.fetchall()}
        rows = conn.execute(
            "SELECT incident_id, count(*) FROM detector_incident_events GROUP BY incident_id"
        ).fetchall()
        events = conn.execute("SELECT id, count(*) FROM detector_events GROUP BY id").fetchall()
    return incidents, {str(i): int(n) for i, n in rows}, {str(i): int(n) for i, n in events}


async def test_incidents_made_while_postgres_is_away_are_all_there_once_after(
    start: Replicas,
    postgres: PostgresServer,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # Leases far longer than any outage here: the owner keeps its source through it (on a loaded
    # box a 2 s lease lapsed while PostgreSQL restarted, and the source's next owner rightly
    # closed what was left open: test_incident_takeover.py shows that case).
    start.lease_s, start.renew_s = 60.0, 1.0
    a = await start("a")
    b = await start("b")
    await until(lambda: running(a) | running(b) == {"default"}, "default running")
    owner, other = (a, b) if running(a) else (b, a)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
        stub = pb_grpc.DetectorServiceStub(channel)
        async with following(stub) as got:
            before = await first_streamed(owner, "default", got)
            postgres.stop()
            try:
                made = []
                for _ in range(3):
                    incident = open_incident(owner, "default")
                    owner.incidents.close_rule_incident(incident, time.time_ns())
                    made.append(incident.id)
                zone_event = gate_entered()
                owner.events.record(zone_event, None)

                # Down until the writes have been tried and have failed (each says so).
                def tried() -> bool:
                    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
                    return any(made[0] in m for m in said) and any(
                        zone_event.id in m or "storing an event failed" in m for m in said
                    )

                await until(tried, "the writes tried while the database is away")
            finally:
                postgres.start()
            # Streamed live through the other replica once the database is back, in order.
            seen: list[tuple[str, int]] = []
            zone_seen = False
            while len(seen) < 2 * len(made) or not zone_seen:
                event = await asyncio.wait_for(got.get(), WAIT_S)
                if event.type == SOURCE_EVENT:
                    zone_seen = zone_seen or event.event.id == zone_event.id
                elif event.incident.id in made:
                    seen.append((event.incident.id, event.type))
            assert seen == [(i, kind) for i in made for kind in (OPENED, CLOSED)]
        listed = await stub.ListIncidents(pb.ListIncidentsRequest(source_id="default"))
    ids = [i.id for i in listed.incidents]
    assert sorted(i for i in ids if i in made) == sorted(made)
    assert all(i.HasField("closed_at") for i in listed.incidents if i.id in made)
    incidents, announced, events = stored(postgres_url)
    assert {i: incidents[i] for i in made} == dict.fromkeys(made, True)
    # Still open, as the owner that kept its source through the outage has it.
    assert incidents[before.id] is False
    # Each opened and closed once: no announcement doubled by a retry; the event stored once.
    assert {i: announced[i] for i in made} == dict.fromkeys(made, 2)
    assert events[zone_event.id] == 1
