"""Verified weapon alerts end to end: a knife in a scripted stream opens an incident, the real
analyzer's model (tiny Gemma 3 on vLLM, CPU) checks its snapshot and full-resolution crop, the
VERIFIED event carries a schema-valid verdict, and each alert policy decides what the webhook
and the ``alert`` flag say. The model is random: a seed (per-request sampling, a setting any
deployment has) picks each verdict."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import prometheus_client
import pytest

from detector_service.settings import DetectorSettings
from tests.detector_service.incidents.test_webhook import Receiver
from tests.detector_service.verification.conftest import (
    Analyzers,
    HeldPort,
    events_until,
    play,
    running,
    until,
)
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

if TYPE_CHECKING:
    from vigil.detector.v1.detector_service_pb2_grpc import DetectorServiceAsyncStub as Stub

OPENED = pb.INCIDENT_EVENT_TYPE_OPENED
CLOSED = pb.INCIDENT_EVENT_TYPE_CLOSED
VERIFIED = pb.INCIDENT_EVENT_TYPE_VERIFIED
# Seeds under which the tiny model gives each verdict on this scene's pictures (found by asking
# VerifyIncident with Sampling(seed=...) for seeds 0, 1, 2, ...).
SEEDS = {"confirmed": 0, "rejected": 2, "uncertain": 14}
VERDICTS = {
    "confirmed": common_pb2.VERDICT_CONFIRMED,
    "rejected": common_pb2.VERDICT_REJECTED,
    "uncertain": common_pb2.VERDICT_UNCERTAIN,
}
POLICIES = {
    "at_opening": pb.ALERT_POLICY_AT_OPENING,
    "when_confirmed": pb.ALERT_POLICY_WHEN_CONFIRMED,
    "both": pb.ALERT_POLICY_BOTH,
}


def closed_and_verified(events: list[pb.StreamIncidentsResponse]) -> bool:
    types = {e.type for e in events}
    return CLOSED in types and VERIFIED in types


def assert_schema_valid(verification: common_pb2.Verification) -> None:
    assert verification.verdict in VERDICTS.values()
    assert 0 < len(verification.sees) <= 120
    assert 0 < len(verification.reason) <= 200
    assert verification.threat_level in (0, 1, 2)
    assert verification.model
    assert verification.model_seconds > 0


async def stored(stub: Stub) -> pb.Incident:
    (incident,) = (await stub.ListIncidents(pb.ListIncidentsRequest(source_id="gate"))).incidents
    return incident


def webhook_events(receiver: Receiver) -> list[tuple[str, bool]]:
    """What the receiver got: (event type without its prefix, alert), in order."""
    return [
        (body["type"].removeprefix("INCIDENT_EVENT_TYPE_"), body.get("alert", False))
        for _, body in receiver.requests
    ]


# (policy, verdict) -> what the webhook gets (in the stream's order); every policy and every
# verdict appear. Under when_confirmed the end of an incident goes out only when the alert went
# before it: a verdict after the incident closed leaves the CLOSED event out.
CASES = {
    ("at_opening", "confirmed"): [("OPENED", True), ("VERIFIED", False), ("CLOSED", False)],
    ("when_confirmed", "confirmed"): [("VERIFIED", True), ("CLOSED", False)],
    ("when_confirmed", "uncertain"): [("VERIFIED", True), ("CLOSED", False)],
    ("when_confirmed", "rejected"): [],
    ("both", "rejected"): [("OPENED", True), ("VERIFIED", False), ("CLOSED", False)],
}


@pytest.mark.parametrize(("policy", "verdict"), list(CASES))
async def test_a_verdict_and_the_alerts_of_each_policy(
    policy: str,
    verdict: str,
    analyzers: Analyzers,
    detector_settings: Callable[..., DetectorSettings],
    knife_video: pathlib.Path,
    receiver: Receiver,
) -> None:
    analyzer = await analyzers.start()
    settings = detector_settings(
        analyzer_url=f"127.0.0.1:{analyzer.port}", verification_seed=SEEDS[verdict]
    )
    async with running(settings) as (_, stub):
        stream = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="gate"))
        await play(stub, knife_video, POLICIES[policy])
        events = await events_until(stream, closed_and_verified)
        stream.cancel()
        opened = events[0]
        assert opened.type == OPENED
        assert opened.incident.verification_state == pb.VERIFICATION_STATE_PENDING
        assert opened.alert == (policy != "when_confirmed")
        (verified,) = [e for e in events if e.type == VERIFIED]
        assert verified.incident.id == opened.incident.id
        assert verified.incident.verification_state == pb.VERIFICATION_STATE_DONE
        assert_schema_valid(verified.incident.verification)
        assert verified.incident.verification.verdict == VERDICTS[verdict]
        assert verified.alert == (policy != "at_opening" and verdict != "rejected")
        # Rejected: a false alarm, kept in the history with its verdict.
        incident = await stored(stub)
        assert incident.verification == verified.incident.verification
        assert incident.false_alarm == (verdict == "rejected")
        assert incident.HasField("closed_at")
    # The webhook sends alerts and what follows an alert, nothing else, in order.
    order = [pb.IncidentEventType.Name(e.type).removeprefix("INCIDENT_EVENT_TYPE_") for e in events]
    closed_first = order.index("CLOSED") < order.index("VERIFIED")
    expected = sorted(
        (
            (kind, alert)
            for kind, alert in CASES[(policy, verdict)]
            if not (kind == "CLOSED" and closed_first and policy == "when_confirmed")
        ),
        key=lambda sent: order.index(sent[0]),
    )
    if expected:
        await asyncio.to_thread(receiver.wait_for, len(expected))
    assert webhook_events(receiver) == expected


async def test_the_analyzer_down_then_back(
    analyzers: Analyzers,
    detector_settings: Callable[..., DetectorSettings],
    knife_video: pathlib.Path,
    receiver: Receiver,
    held_port: HeldPort,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="detector_service")
    settings = detector_settings(
        analyzer_url=f"127.0.0.1:{held_port.port}",
        verification_seed=SEEDS["confirmed"],
        alert_policy="when_confirmed",
    )
    async with running(settings) as (detector, stub):
        stream = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="gate"))
        await play(stub, knife_video)
        await events_until(stream, lambda got: any(e.type == CLOSED for e in got))
        # Tried and tried again: the incident waits, PENDING, and alerts nobody yet.
        await until(lambda: caplog.text.count("retrying in") >= 3)
        incident = await stored(stub)
        assert incident.verification_state == pb.VERIFICATION_STATE_PENDING
        assert not receiver.requests
        # The analyzer comes back where it was expected.
        await analyzers.start(port=held_port.release())
        (verified,) = await events_until(stream, lambda got: any(e.type == VERIFIED for e in got))
        stream.cancel()
        scraped = prometheus_client.generate_latest(detector.metrics.registry).decode()
        assert "vigil_incident_verdicts_total 1.0" in scraped
        assert verified.incident.id == incident.id
        assert verified.incident.verification.verdict == common_pb2.VERDICT_CONFIRMED
        assert verified.alert
    await asyncio.to_thread(receiver.wait_for, 1)
    assert webhook_events(receiver) == [("VERIFIED", True)]


async def test_incidents_left_pending_are_verified_after_a_restart(
    analyzers: Analyzers,
    detector_settings: Callable[..., DetectorSettings],
    knife_video: pathlib.Path,
    held_port: HeldPort,
) -> None:
    settings = detector_settings(
        analyzer_url=f"127.0.0.1:{held_port.port}", verification_seed=SEEDS["rejected"]
    )
    async with running(settings) as (_, stub):
        stream = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="gate"))
        await play(stub, knife_video)
        await events_until(stream, lambda got: any(e.type == CLOSED for e in got))
        stream.cancel()
        assert (await stored(stub)).verification_state == pb.VERIFICATION_STATE_PENDING
    await analyzers.start(port=held_port.release())
    async with running(settings) as (_, stub):
        async with asyncio.timeout(120):
            incident = await stored(stub)
            while incident.verification_state == pb.VERIFICATION_STATE_PENDING:
                await asyncio.sleep(0.1)
                incident = await stored(stub)
    assert incident.verification_state == pb.VERIFICATION_STATE_DONE
    assert_schema_valid(incident.verification)
    assert incident.false_alarm == (incident.verification.verdict == common_pb2.VERDICT_REJECTED)


async def test_without_an_analyzer_incidents_are_not_verified(
    detector_settings: Callable[..., DetectorSettings],
    knife_video: pathlib.Path,
    receiver: Receiver,
) -> None:
    # when_confirmed would never alert without a verdict: it alerts at opening instead.
    settings = detector_settings(alert_policy="when_confirmed")
    async with running(settings) as (_, stub):
        stream = stub.StreamIncidents(pb.StreamIncidentsRequest(source_id="gate"))
        await play(stub, knife_video)
        events = await events_until(stream, lambda got: any(e.type == CLOSED for e in got))
        stream.cancel()
    assert [e.type for e in events] == [OPENED, CLOSED]
    assert [e.incident.verification_state for e in events] == [0, 0]
    assert [e.alert for e in events] == [True, False]
    await asyncio.to_thread(receiver.wait_for, 2)
    assert webhook_events(receiver) == [("OPENED", True), ("CLOSED", False)]
