"""``/ws/incidents``, the page's live feed: the detector's incident stream relayed as JSON, source
events in the REST API's shape, and a feed that outlives a detector outage (the bridge follows the
stream again; the browser's socket stays open). Incidents raised by a model and shown by the page
are covered end to end in ``tests/e2e/test_incidents.py``."""

from __future__ import annotations

import asyncio

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import connect

from bridge.incident_feed import feed_message
from tests.bridge.conftest import DetectorHandle, StartBridge
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import IncidentEvent


def test_a_source_event_is_sent_as_the_rest_api_writes_it() -> None:
    event = pb.SourceEvent(
        id="ev-1", source_id="door", kind=pb.SOURCE_EVENT_KIND_LINE_CROSS,
        at=Timestamp(seconds=1_767_225_600, nanos=500_000_000), zone="Gate line",
        class_name="person", track_id=7, direction=pb.CROSSING_DIRECTION_IN,
        detail="", snapshot_jpeg=b"\xff\xd8jpeg",
    )  # fmt: skip
    message = feed_message(
        IncidentEvent.from_proto(
            pb.StreamIncidentsResponse(type=pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT, event=event)
        )
    )
    assert message == {
        "type": "source_event",
        "event": {
            "id": "ev-1", "source_id": "door", "kind": "line_cross",
            "at": "2026-01-01T00:00:00.500000Z", "zone": "Gate line", "class_name": "person",
            "track_id": 7, "direction": "in", "cleared": False, "detail": "", "has_snapshot": True,
        },
        "snapshot": "/9hqcGVn",
    }  # fmt: skip
    health = pb.SourceEvent(id="ev-2", source_id="door", kind=pb.SOURCE_EVENT_KIND_CAMERA_COVERED)
    covered = feed_message(
        IncidentEvent.from_proto(
            pb.StreamIncidentsResponse(type=pb.INCIDENT_EVENT_TYPE_SOURCE_EVENT, event=health)
        )
    )
    assert covered is not None
    assert covered["event"]["kind"] == "camera_covered"
    assert (covered["event"]["track_id"], covered["event"]["direction"]) == (0, None)
    assert covered["snapshot"] is None


def test_an_incident_is_sent_as_the_rest_api_lists_it_with_its_recording() -> None:
    incident = pb.Incident(
        id="inc-1", source_id="door", class_name="knife", peak_confidence=0.5,
        opened_at=Timestamp(seconds=1_767_225_600),
        recording=pb.TimeRange(start=Timestamp(seconds=1_767_225_590)), zones=["Door area"],
    )  # fmt: skip
    message = feed_message(
        IncidentEvent.from_proto(
            pb.StreamIncidentsResponse(type=pb.INCIDENT_EVENT_TYPE_OPENED, incident=incident)
        )
    )
    assert message is not None
    assert (message["type"], message["event"], message["snapshot"]) == ("incident", "opened", None)
    sent = message["incident"]
    assert (sent["id"], sent["class_name"], sent["closed_at"]) == ("inc-1", "knife", None)
    assert sent["opened_at"] == "2026-01-01T00:00:00Z"
    # Open-ended while the incident is open.
    assert sent["recording"] == {"start": "2025-12-31T23:59:50Z", "end": None}
    assert sent["zones"] == ["Door area"]


def test_a_verdict_is_sent_with_its_alert_flag_and_the_false_alarm() -> None:
    verdict = common_pb2.Verification(
        verdict=common_pb2.VERDICT_REJECTED, sees="a phone", threat_level=0,
        reason="no blade", model="gemma", model_seconds=0.4,
    )  # fmt: skip
    incident = pb.Incident(
        id="inc-2", source_id="door", class_name="knife", opened_at=Timestamp(seconds=1),
        verification_state=pb.VERIFICATION_STATE_DONE, verification=verdict, false_alarm=True,
    )  # fmt: skip
    event = pb.StreamIncidentsResponse(type=pb.INCIDENT_EVENT_TYPE_VERIFIED, incident=incident)
    message = feed_message(IncidentEvent.from_proto(event))
    assert message is not None
    assert (message["event"], message["alert"]) == ("verified", False)
    sent = message["incident"]
    assert (sent["verification_state"], sent["false_alarm"]) == ("done", True)
    assert sent["verification"]["verdict"] == "rejected"
    assert sent["verification"]["sees"] == "a phone"
    event.alert = True
    event.type = pb.INCIDENT_EVENT_TYPE_OPENED
    alerting = feed_message(IncidentEvent.from_proto(event))
    assert alerting is not None
    assert (alerting["event"], alerting["alert"]) == ("opened", True)


async def test_the_feed_outlives_a_detector_outage(
    start_bridge: StartBridge, detector: DetectorHandle
) -> None:
    bridge = await start_bridge(detector_address=detector.address)
    async with connect(f"{bridge.ws}/ws/incidents") as ws:
        await following(detector)
        await detector.stop()
        error = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error["type"] == "error"
        assert error["code"] == "UNAVAILABLE"
        await detector.restart()
        # The bridge follows the restarted detector's stream; the browser's socket stayed open.
        await following(detector)
        await ws.ping()
        assert ws.close_code is None


async def following(detector: DetectorHandle) -> None:
    """Until the detector has one StreamIncidents call (the bridge's) following its incidents."""
    assert detector.server is not None
    async with asyncio.timeout(10):
        while len(detector.server.incidents._subscriptions) != 1:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)
