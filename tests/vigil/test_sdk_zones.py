"""The SDK's zones, source updates and source events, blocking and asyncio, against the real
detector service; and ``vigil zones`` / ``vigil events`` on top of them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import time

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.server import DetectorServer
from tests.vigil.conftest import stage_incident, wait_for_incident_subscribers
from vigil.cli import main
from vigil.core.errors import InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import AsyncDetectorClient, DetectorClient, IncidentEvent, SourceEvent, Zone

T0 = 1_735_732_800
DOOR = Zone.area("door", [(0.1, 0.2), (0.4, 0.2), (0.4, 0.9)], classes=["person"], loiter_s=30)
GATE = Zone.line("gate", (0.5, 0.0), (0.5, 1.0), direction="in")


def record(detector: DetectorServer, kind: pb.SourceEventKind.ValueType, at_s: int) -> None:
    event = pb.SourceEvent(
        source_id="default", kind=kind, at=Timestamp(seconds=T0 + at_s), zone="gate",
        class_name="person", track_id=3, direction=pb.CROSSING_DIRECTION_IN,
    )  # fmt: skip
    detector.events.record(event, b"\xff\xd8snap")


def wait_for_event_subscribers(server: DetectorServer) -> None:
    deadline = time.monotonic() + 5
    while not server.events._subscriptions:
        assert time.monotonic() < deadline, "the event stream never reached the service"
        time.sleep(0.01)


def test_update_source_with_zones(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        spec = client.get_source("default").spec
        assert (spec.id, spec.kind, spec.zones) == ("default", "test_pattern", ())
        updated = client.update_source(
            dataclasses.replace(spec, zones=(DOOR, GATE), incident_zones=("door",), max_fps=5)
        )
        assert (updated.zones, updated.incident_zones, updated.max_fps) == (
            (DOOR, GATE),
            ("door",),
            5.0,
        )
        assert client.get_source("default").spec.zones == (DOOR, GATE)
        bad = dataclasses.replace(GATE, points=((0.1, 0.1),))
        with pytest.raises(InvalidInput, match="zone 'gate': a line needs exactly 2 points"):
            client.update_source(dataclasses.replace(spec, zones=(bad,)))
        with pytest.raises(InvalidInput, match="unknown source kind 'camera'"):
            client.update_source(dataclasses.replace(spec, kind="camera"))
        with pytest.raises(NotFound):
            client.update_source(dataclasses.replace(spec, id="nope"))


def test_list_events(detector: DetectorServer) -> None:
    with DetectorClient(f"127.0.0.1:{detector.port}") as client:
        for n, kind in enumerate(
            [pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_LINE_CROSS]
        ):
            record(detector, kind, n)
        page = client.list_events("default")
        assert [(e.kind, e.at) for e in page.items] == [("line_cross", T0 + 1), ("zone_enter", T0)]
        cross = page.items[0]
        assert isinstance(cross, SourceEvent)
        assert (cross.zone, cross.class_name, cross.track_id, cross.direction) == (
            "gate", "person", 3, "in",
        )  # fmt: skip
        assert (cross.has_snapshot, cross.snapshot_jpeg) == (True, b"")
        assert client.list_events(kinds=["zone_enter"]).items[0].kind == "zone_enter"
        assert client.list_events(start=T0 + 1, include_snapshot=True).items[0].snapshot_jpeg
        assert [e.at for e in client.list_events(end=T0 + 1).items] == [T0]
        first = client.list_events(page_size=1)
        assert client.list_events(page_token=first.next_page_token).items[0].kind == "zone_enter"
        with pytest.raises(InvalidInput, match="unknown event kinds"):
            client.list_events(kinds=["zone_dance"])


def test_incidents_with_events_yield_both(detector: DetectorServer) -> None:
    with DetectorClient(f"127.0.0.1:{detector.port}") as client:
        stream = client.incidents("default", include_events=True)
        wait_for_incident_subscribers(detector)
        wait_for_event_subscribers(detector)
        record(detector, pb.SOURCE_EVENT_KIND_ZONE_LOITER, 5)
        stage_incident(detector, "default", close=False)
        items: list[IncidentEvent | SourceEvent] = []
        for item in stream:
            items.append(item)
            if len(items) == 2:
                stream.cancel()
    kinds = {type(i).__name__: i.kind for i in items}
    assert kinds == {"SourceEvent": "zone_loiter", "IncidentEvent": "opened"}


async def test_async_client_zones_and_events(detector: DetectorServer) -> None:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        spec = (await client.get_source("default")).spec
        updated = await client.update_source(dataclasses.replace(spec, zones=(GATE,)))
        assert updated.zones == (GATE,)

        stream = client.incidents(include_events=True)
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.to_thread(wait_for_event_subscribers, detector)
        record(detector, pb.SOURCE_EVENT_KIND_LINE_CROSS, 9)
        item = await asyncio.wait_for(reader, 5)
        stream.cancel()
        assert isinstance(item, SourceEvent)
        assert (item.kind, item.direction, item.has_snapshot) == ("line_cross", "in", True)
        page = await client.list_events(kinds=["line_cross"])
        assert [e.id for e in page.items] == [item.id]


def test_cli_zones_and_events(
    detector: DetectorServer, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = ["--detector", f"127.0.0.1:{detector.port}"]
    zones = tmp_path / "zones.json"
    zones.write_text(
        json.dumps(
            [
                {"name": "door", "kind": "area", "points": [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]],
                 "classes": ["person"], "loiter_s": 30},
                {"name": "gate", "kind": "line", "points": [[0.5, 0], [0.5, 1]], "direction": "in"},
            ]
        )
    )  # fmt: skip
    assert main(["zones", "set", "default", str(zones), "--incident-zones", "door", *address]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "KIND", "POINTS", "CLASSES", "RULES"]
    assert out[1].split()[:2] == ["door", "area"]
    assert "loiter 30 s" in out[1]
    assert "direction in" in out[2]
    assert out[3] == "incidents only inside: door"
    assert main(["zones", "ls", "default", "--json", *address]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [z["name"] for z in listed] == ["door", "gate"]
    assert listed[1]["points"] == [[0.5, 0.0], [0.5, 1.0]]

    zones.write_text('[{"name": "x", "kind": "area", "points": [[0, 0], [2, 0], [0, 1]]}]')
    assert main(["zones", "set", "default", str(zones), *address]) == 1
    assert "INVALID_ARGUMENT: zone 'x': point (2, 0) is off the picture" in capsys.readouterr().err
    zones.write_text("{")
    assert main(["zones", "set", "default", str(zones), *address]) == 2

    record(detector, pb.SOURCE_EVENT_KIND_LINE_CROSS, 0)
    assert main(["events", "--kind", "line_cross", *address]) == 0
    line = capsys.readouterr().out
    assert "LINE_CROSS in" in line
    assert "person #3 gate on default" in line
    assert main(["events", "--since", "2030-01-01T00:00:00Z", *address]) == 0
    assert capsys.readouterr().out == "no events\n"
