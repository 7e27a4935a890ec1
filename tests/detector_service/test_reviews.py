"""ReviewIncident and GetIncidentStats on the real detector service, and the false-alarm gauges.

Incidents are made the way the service makes them: knife detections fed to its own tracker (the
"none" backend finds nothing by itself), or, for counts over many, a history written by the
service's store before it starts, as a service that ran for a while would have left it.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detector_service.incidents.store import IncidentStore
from detector_service.metrics import ReviewCollector
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service.incidents.helpers import det, frame_jpeg
from tests.detector_service.incidents.test_review_store import made
from tests.detector_service.test_config_and_metrics import free_port
from tests.detector_service.test_service_incidents import wait_for_subscription
from vigil.common.v1 import common_pb2
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.core.errors import from_rpc_error
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    Stub = pb_grpc.DetectorServiceAsyncStub

CONFIRMED, DISMISSED = pb.REVIEW_DECISION_CONFIRMED, pb.REVIEW_DECISION_DISMISSED
FRAME_NS = 100_000_000


def open_incident(server: DetectorServer, source_id: str, start_ns: int) -> None:
    """A knife in three frames: the service's tracker (min_frames 3 by default) opens one."""
    for index in range(3):
        server.incidents.observe(source_id, [det()], frame_jpeg(index), start_ns + index * FRAME_NS)


def close_incident(server: DetectorServer, source_id: str, start_ns: int) -> None:
    """A frame without the knife, long after: the incident closes."""
    server.incidents.observe(source_id, [], frame_jpeg(9), start_ns + 60 * 10**9)


async def next_event(
    events: AsyncIterator[pb.StreamIncidentsResponse],
) -> pb.StreamIncidentsResponse:
    return await asyncio.wait_for(anext(events), 5)


async def test_confirm_and_dismiss_are_kept_streamed_and_replace_each_other(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    call = detector_stub.StreamIncidents(pb.StreamIncidentsRequest(include_snapshot=False))
    events: AsyncIterator[pb.StreamIncidentsResponse] = call.__aiter__()
    first = asyncio.ensure_future(anext(events))
    await wait_for_subscription(detector, 1)
    start = time.time_ns()
    open_incident(detector, "gate", start)
    close_incident(detector, "gate", start)
    opened = await asyncio.wait_for(first, 5)
    assert opened.type == pb.INCIDENT_EVENT_TYPE_OPENED
    assert (await next_event(events)).type == pb.INCIDENT_EVENT_TYPE_CLOSED
    incident_id = opened.incident.id
    assert not opened.incident.HasField("review")

    before = time.time()
    answer = await detector_stub.ReviewIncident(
        pb.ReviewIncidentRequest(
            incident_id=incident_id, decision=DISMISSED, note="a phone", reviewer="ana"
        )
    )
    dismissed = answer.incident
    assert dismissed.id == incident_id
    assert (dismissed.review.decision, dismissed.review.note) == (DISMISSED, "a phone")
    assert dismissed.review.reviewer == "ana"
    assert dismissed.review.reviewed_at.ToSeconds() >= int(before)
    assert dismissed.false_alarm
    assert dismissed.HasField("closed_at")
    assert dismissed.snapshot_jpeg == b""
    event = await next_event(events)
    assert event.type == pb.INCIDENT_EVENT_TYPE_REVIEWED
    assert event.incident.review == dismissed.review
    assert event.incident.false_alarm

    # A later review replaces it: kept, streamed, listed.
    answer = await detector_stub.ReviewIncident(
        pb.ReviewIncidentRequest(incident_id=incident_id, decision=CONFIRMED)
    )
    assert answer.incident.review.decision == CONFIRMED
    assert answer.incident.review.note == ""
    assert not answer.incident.false_alarm
    event = await next_event(events)
    assert (event.type, event.incident.review.decision) == (
        pb.INCIDENT_EVENT_TYPE_REVIEWED,
        CONFIRMED,
    )
    listed = (await detector_stub.ListIncidents(pb.ListIncidentsRequest())).incidents
    assert [(i.id, i.review.decision, i.false_alarm) for i in listed] == [
        (incident_id, CONFIRMED, False)
    ]
    call.cancel()


async def test_a_review_of_an_open_incident_rides_on_its_closed_event(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    call = detector_stub.StreamIncidents(
        pb.StreamIncidentsRequest(source_id="door", include_snapshot=True)
    )
    events: AsyncIterator[pb.StreamIncidentsResponse] = call.__aiter__()
    first = asyncio.ensure_future(anext(events))
    await wait_for_subscription(detector, 1)
    start = time.time_ns()
    open_incident(detector, "door", start)
    opened = await asyncio.wait_for(first, 5)
    request = pb.ReviewIncidentRequest(incident_id=opened.incident.id, decision=DISMISSED)
    answer = await detector_stub.ReviewIncident(request)
    assert not answer.incident.HasField("closed_at")
    reviewed = await next_event(events)
    assert reviewed.type == pb.INCIDENT_EVENT_TYPE_REVIEWED
    assert reviewed.incident.snapshot_jpeg == opened.incident.snapshot_jpeg  # it was asked for

    close_incident(detector, "door", start)
    closed = await next_event(events)
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.review.decision == DISMISSED
    assert closed.incident.false_alarm
    # The close saved the tracker's copy again: the history still has the review.
    (listed,) = (await detector_stub.ListIncidents(pb.ListIncidentsRequest())).incidents
    assert listed.HasField("closed_at")
    assert (listed.review.decision, listed.false_alarm) == (DISMISSED, True)
    call.cancel()


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (pb.ReviewIncidentRequest(incident_id="nope", decision=CONFIRMED), "NOT_FOUND", None),
        (pb.ReviewIncidentRequest(decision=CONFIRMED), "INVALID_ARGUMENT", "incident_id"),
        (pb.ReviewIncidentRequest(incident_id="x"), "INVALID_ARGUMENT", "decision"),
        (pb.ReviewIncidentRequest(incident_id="x", decision=7), "INVALID_ARGUMENT", "decision"),  # type: ignore[arg-type]
        (
            pb.ReviewIncidentRequest(incident_id="x", decision=DISMISSED, note="n" * 501),
            "INVALID_ARGUMENT",
            "note",
        ),
        (
            pb.ReviewIncidentRequest(incident_id="x", decision=DISMISSED, reviewer="r" * 101),
            "INVALID_ARGUMENT",
            "reviewer",
        ),
    ],
)
async def test_bad_reviews_are_refused(
    detector_stub: Stub, request_: pb.ReviewIncidentRequest, code: str, field: str | None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector_stub.ReviewIncident(request_)
    error = from_rpc_error(caught.value)
    assert (error.code, error.field) == (code, field)


async def test_the_longest_note_and_reviewer_are_taken(
    detector: DetectorServer, detector_stub: Stub
) -> None:
    subscription = detector.incidents.subscribe()
    open_incident(detector, "gate", time.time_ns())
    opened = await asyncio.wait_for(anext(subscription), 5)
    subscription.close()
    request = pb.ReviewIncidentRequest(
        incident_id=opened.incident.id, decision=CONFIRMED, note="é" * 500, reviewer="r" * 100
    )
    answer = await detector_stub.ReviewIncident(request)
    assert answer.incident.review.note == "é" * 500


def seed_history(data_dir: pathlib.Path) -> None:
    """A history as a service that ran a while leaves it: weapon incidents (one rejected by the
    model), a watch rule's incidents, some reviewed."""
    store = IncidentStore(data_dir / "incidents.sqlite3")
    store.save(made(1, "gate", "knife"))
    store.save(made(2, "gate", "knife", verdict=common_pb2.VERDICT_REJECTED))
    store.save(made(3, "gate", "knife"))
    store.save(made(4, "bay", "vehicle after hours", rule_id="bay-night"))
    dismissal = pb.Review(decision=DISMISSED)
    store.review(made(1).id, dismissal)
    store.review(made(4).id, dismissal)
    store.review(made(3).id, pb.Review(decision=CONFIRMED))
    store.close()


@pytest.fixture
def seeded_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    seed_history(tmp_path / "data")
    return DetectorSettings(
        port=0, backend="none", data_dir=tmp_path / "data", metrics_port=free_port()
    )


def rows(response: pb.GetIncidentStatsResponse) -> list[tuple[object, ...]]:
    return [
        (s.source_id, s.class_name, s.rule_id, s.incidents, s.false_alarms, s.confirmed,
         s.dismissed, s.rejected, round(s.false_alarm_rate, 3))
        for s in response.stats
    ]  # fmt: skip


EXPECTED = [
    ("bay", "vehicle after hours", "bay-night", 1, 1, 0, 1, 0, 1.0),
    ("gate", "knife", "", 3, 2, 1, 1, 1, 0.667),
]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


async def test_stats_and_gauges_count_the_history_across_restarts(
    seeded_settings: DetectorSettings,
) -> None:
    for _ in range(2):  # the second time, the same history read by a restarted service
        server = await serve(seeded_settings)
        try:
            address = f"127.0.0.1:{server.port}"
            async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
                stub: Stub = pb_grpc.DetectorServiceStub(channel)
                assert rows(await stub.GetIncidentStats(pb.GetIncidentStatsRequest())) == EXPECTED
                only_bay = pb.GetIncidentStatsRequest(source_id="bay")
                assert rows(await stub.GetIncidentStats(only_bay)) == EXPECTED[:1]
                since = pb.GetIncidentStatsRequest()
                since.since.FromNanoseconds(made(3).opened_at.ToNanoseconds())
                got = [(r[0], r[3]) for r in rows(await stub.GetIncidentStats(since))]
                assert got == [("bay", 1), ("gate", 1)]
            assert seeded_settings.metrics_port is not None
            text = await asyncio.to_thread(scrape, seeded_settings.metrics_port)
            knife = 'class="knife",rule="",source="gate"'
            rule = 'class="vehicle after hours",rule="bay-night",source="bay"'
            for line in (
                f"vigil_incidents_kept{{{knife}}} 3.0",
                f"vigil_incidents_false_alarms{{{knife}}} 2.0",
                f"vigil_incidents_confirmed{{{knife}}} 1.0",
                f"vigil_incidents_dismissed{{{knife}}} 1.0",
                f"vigil_incidents_rejected{{{knife}}} 1.0",
                f"vigil_incidents_false_alarm_rate{{{rule}}} 1.0",
                f"vigil_incidents_dismissed{{{rule}}} 1.0",
            ):
                assert line in text, line
        finally:
            await server.stop(0)


async def test_a_review_moves_the_gauges_both_ways(seeded_settings: DetectorSettings) -> None:
    server = await serve(seeded_settings)
    try:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            stub: Stub = pb_grpc.DetectorServiceStub(channel)
            assert seeded_settings.metrics_port is not None
            port = seeded_settings.metrics_port
            knife = 'vigil_incidents_false_alarms{class="knife",rule="",source="gate"}'
            assert f"{knife} 2.0" in await asyncio.to_thread(scrape, port)
            # The model's rejection confirmed by an operator: one false alarm less.
            request = pb.ReviewIncidentRequest(incident_id=made(2).id, decision=CONFIRMED)
            await stub.ReviewIncident(request)
            assert f"{knife} 1.0" in await asyncio.to_thread(scrape, port)
            request = pb.ReviewIncidentRequest(incident_id=made(3).id, decision=DISMISSED)
            await stub.ReviewIncident(request)
            assert f"{knife} 2.0" in await asyncio.to_thread(scrape, port)
    finally:
        await server.stop(0)


def test_a_scrape_while_the_store_is_closed_has_no_figures(tmp_path: pathlib.Path) -> None:
    store = IncidentStore(tmp_path / "incidents.sqlite3")
    store.save(made(1))
    registry = CollectorRegistry()
    registry.register(ReviewCollector(lambda: store.stats().result(5)))
    assert 'vigil_incidents_kept{class="knife",rule="",source="cam"} 1.0' in scrape_registry(
        registry
    )
    store.close()
    text = scrape_registry(registry)
    assert "# TYPE vigil_incidents_kept gauge" in text
    assert "vigil_incidents_kept{" not in text


def scrape_registry(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()
