"""Incidents across detector replicas on one PostgreSQL database: an incident opened on a source
replica A runs is streamed live, listed, counted and reviewed through replica B (another
process), B's review reaches A's stream, and A's zone events are streamed and listed through B;
two replicas adding one source id at once: exactly one succeeds, the other gets ALREADY_EXISTS;
a detector its database refuses stops with one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.server import DetectorServer
from tests.detector_service.incidents.helpers import frame_jpeg
from tests.detector_service.replicas import ROOT, Replicas, owners, running, spawn, until
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

WAIT_S = 60.0
OPENED = pb.INCIDENT_EVENT_TYPE_OPENED
REVIEWED = pb.INCIDENT_EVENT_TYPE_REVIEWED
SOURCE_EVENT = pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT
Events = asyncio.Queue[pb.StreamIncidentsResponse]


def gate_entered() -> pb.SourceEvent:
    """A zone event of the default source, as its zone watching records it."""
    return pb.SourceEvent(
        id=uuid.uuid4().hex,
        source_id="default",
        kind=pb.SOURCE_EVENT_KIND_ZONE_ENTER,
        zone="gate",
    )


def open_incident(server: DetectorServer, source_id: str) -> pb.Incident:
    """An incident of a watch rule on ``source_id``, opened by ``server``'s tracker."""
    now_ns = time.time_ns()
    opened = Timestamp()
    opened.FromNanoseconds(now_ns)
    incident = pb.Incident(
        id=uuid.uuid4().hex,
        source_id=source_id,
        class_name="person at the gate",
        rule_id="gate",
        opened_at=opened,
        snapshot_jpeg=frame_jpeg(1),
    )
    server.incidents.open_rule_incident(incident, now_ns)
    return incident


@contextlib.asynccontextmanager
async def following(stub: Stub) -> AsyncIterator[Events]:
    """StreamIncidents of every source, its events in a queue."""
    call = stub.StreamIncidents(
        pb.StreamIncidentsRequest(include_snapshot=True, include_events=True)
    )
    got: Events = asyncio.Queue()

    async def read() -> None:
        async for event in call:
            await got.put(event)

    task = asyncio.create_task(read())
    try:
        yield got
    finally:
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await task


async def first_streamed(server: DetectorServer, source_id: str, got: Events) -> pb.Incident:
    """Open incidents until the stream shows one: a stream follows from when it is subscribed,
    which the caller cannot see. Returns the streamed incident, checked to be one opened here."""
    opened: set[str] = set()
    deadline = time.monotonic() + WAIT_S
    while True:
        opened.add(open_incident(server, source_id).id)
        try:
            event = await asyncio.wait_for(got.get(), 1.0)
            while event.type == SOURCE_EVENT:  # the cameras' own (health), not ours
                event = await asyncio.wait_for(got.get(), 1.0)
        except TimeoutError:
            assert time.monotonic() < deadline, "no incident of the other replica was streamed"
            continue
        assert event.type == OPENED
        assert event.incident.id in opened
        return event.incident


async def next_of(got: Events, incident_id: str, kind: pb.IncidentEventType.ValueType) -> None:
    while True:
        event = await asyncio.wait_for(got.get(), WAIT_S)
        if event.incident.id == incident_id and event.type == kind:
            return


async def test_an_incident_on_one_replica_is_streamed_listed_and_reviewed_through_another(
    start: Replicas, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    a = await start("a")
    await until(lambda: running(a) == {"default"}, "a running the default source")
    process, port_b = await asyncio.to_thread(spawn, tmp_path, postgres_url, "b")
    try:
        await until(lambda: owners(postgres_url) == {"default": "a"}, "a owning default")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port_b}") as channel_b,
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel_a,
        ):
            b, on_a_stub = (
                pb_grpc.DetectorServiceStub(channel_b),
                pb_grpc.DetectorServiceStub(channel_a),
            )
            async with following(b) as on_b, following(on_a_stub) as on_a:
                # Streamed live through b, snapshot and all, though a runs the source.
                incident = await first_streamed(a, "default", on_b)
                assert incident.snapshot_jpeg == frame_jpeg(1)
                assert incident.rule_id == "gate"
                # Now certainly following: the next one comes too, exactly once.
                second = open_incident(a, "default")
                await next_of(on_b, second.id, OPENED)

                # Listed and counted through b: one shared history.
                listed = await b.ListIncidents(pb.ListIncidentsRequest(source_id="default"))
                assert {incident.id, second.id} <= {i.id for i in listed.incidents}
                stats = await b.GetIncidentStats(pb.GetIncidentStatsRequest(source_id="default"))
                assert [(s.rule_id, s.incidents >= 2) for s in stats.stats] == [("gate", True)]

                # Reviewed through b: kept, streamed on b and on a (the owner).
                reviewed = await b.ReviewIncident(
                    pb.ReviewIncidentRequest(
                        incident_id=second.id,
                        decision=pb.REVIEW_DECISION_DISMISSED,
                        note="a delivery",
                    )
                )
                assert reviewed.incident.false_alarm
                await next_of(on_b, second.id, REVIEWED)
                await next_of(on_a, second.id, REVIEWED)
                # a's own later event (the close) does not undo it.
                a.incidents.close_rule_incident(second, time.time_ns())
                listed = await on_a_stub.ListIncidents(pb.ListIncidentsRequest())
                found = {i.id: i for i in listed.incidents}[second.id]
                assert found.review.decision == pb.REVIEW_DECISION_DISMISSED
                assert found.review.note == "a delivery"
                assert found.false_alarm

                # A zone event of a's source: streamed and listed through b too.
                zone_event = gate_entered()
                a.events.record(zone_event, None)
                while (event := await asyncio.wait_for(on_b.get(), WAIT_S)).event.id != (
                    zone_event.id
                ):
                    pass
                assert event.type == SOURCE_EVENT
                assert event.event.zone == "gate"
                listed_events = await b.ListEvents(pb.ListEventsRequest(source_id="default"))
                assert zone_event.id in {e.id for e in listed_events.events}
    finally:
        process.kill()
        process.wait()


async def test_two_replicas_adding_one_source_at_once_one_succeeds(start: Replicas) -> None:
    a = await start("a")
    b = await start("b")
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as channel_b,
    ):
        stubs: list[Stub] = [
            pb_grpc.DetectorServiceStub(channel_a),
            pb_grpc.DetectorServiceStub(channel_b),
        ]
        for n in range(5):
            source_id = f"gate-{n}"
            request = pb.AddSourceRequest(
                source=pb.SourceSpec(id=source_id, kind=pb.SOURCE_KIND_TEST_PATTERN)
            )
            results = await asyncio.gather(
                *(stub.AddSource(request) for stub in stubs), return_exceptions=True
            )
            codes = sorted(
                r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in results
            )
            assert codes == ["ALREADY_EXISTS", "OK"], results
            # Run by exactly one replica once the leases settle.

            def on_one(sid: str = source_id) -> bool:
                return (sid in running(a)) != (sid in running(b))

            await until(on_one, f"{source_id} running on one replica")


def test_a_detector_refused_by_its_database_says_so_in_one_line(
    postgres_url: str, tmp_path: pathlib.Path
) -> None:
    """A wrong password: one line naming the database (password masked), no traceback; status 1."""
    url = urllib.parse.urlsplit(postgres_url)
    wrong = url._replace(netloc=f"{url.username}:canary-pw-4711@{url.hostname}:{url.port}")
    done = subprocess.run(
        [sys.executable, "-m", "detector_service"],
        env={
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}",
            "VIGIL_DETECTOR_PORT": "0",
            "VIGIL_DETECTOR_BACKEND": "none",
            "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / "data"),
            "VIGIL_DETECTOR_DATABASE_URL": wrong.geturl(),
            "VIGIL_DETECTOR_DATABASE_CONNECT_TIMEOUT_S": "5",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    place = f"postgresql://{url.username}:***@{url.hostname}:{url.port}{url.path}"
    assert last.startswith(f"detector service cannot start: cannot use PostgreSQL at {place} ("), (
        last
    )
    assert "password authentication failed" in last
    assert "Traceback" not in done.stderr
    assert "canary-pw-4711" not in done.stdout + done.stderr
