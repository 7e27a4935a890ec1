"""``PUT /api/sources/{id}`` (zones among the spec) and ``GET /api/events`` on a real detector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.detector.v1 import detector_service_pb2 as pb

pytestmark = pytest.mark.timeout(30)

DOOR = {
    "name": "door", "kind": "area", "points": [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]],
    "classes": ["person"], "loiter_s": 30.0, "direction": None,
}  # fmt: skip
GATE = {
    "name": "gate", "kind": "line", "points": [[0.5, 0.0], [0.5, 1.0]], "classes": [],
    "loiter_s": 0.0, "direction": "in",
}  # fmt: skip


@pytest.fixture
async def client(start_bridge: Any, detector: Any) -> AsyncIterator[httpx.AsyncClient]:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


async def test_put_replaces_the_spec_with_its_zones(client: httpx.AsyncClient) -> None:
    (default,) = (await client.get("/api/sources")).json()["sources"]
    spec = {**default["spec"], "zones": [DOOR, GATE], "incident_zones": ["door"]}

    updated = await client.put("/api/sources/default", json=spec)
    assert updated.status_code == 200, updated.text
    assert updated.json()["spec"]["zones"] == [DOOR, GATE]
    listed = (await client.get("/api/sources")).json()["sources"][0]["spec"]
    assert (listed["zones"], listed["incident_zones"]) == ([DOOR, GATE], ["door"])

    # The detector's rules, in its words.
    off = {**spec, "zones": [{**DOOR, "points": [[0.1, 0.2], [1.4, 0.2], [0.4, 0.9]]}]}
    refused = await client.put("/api/sources/default", json=off)
    assert refused.status_code == 400, refused.text
    assert "zone 'door': point (1.4, 0.2) is off the picture" in refused.json()["message"]
    kind = await client.put("/api/sources/default", json={**spec, "kind": "webcam"})
    assert (kind.status_code, kind.json()["code"]) == (400, "INVALID_ARGUMENT")
    other = await client.put("/api/sources/default", json={**spec, "id": "other"})
    assert other.status_code == 400, other.text
    missing = await client.put("/api/sources/nope", json={**spec, "id": "nope"})
    assert missing.status_code == 404, missing.text


async def test_events_are_listed_newest_first_with_filters(
    client: httpx.AsyncClient, detector: Any
) -> None:
    t0 = 1_735_732_800  # 2025-01-01T12:00:00Z
    kinds = [pb.SOURCE_EVENT_KIND_ZONE_ENTER, pb.SOURCE_EVENT_KIND_LINE_CROSS]
    directions = [pb.CROSSING_DIRECTION_UNSPECIFIED, pb.CROSSING_DIRECTION_OUT]
    for n, (kind, direction) in enumerate(zip(kinds, directions, strict=True)):
        event = pb.SourceEvent(
            source_id="default", kind=kind, at=Timestamp(seconds=t0 + n), zone="gate",
            class_name="person", track_id=7, direction=direction,
        )  # fmt: skip
        detector.server.events.record(event, b"\xff\xd8" if n else None)

    page = (await client.get("/api/events")).json()
    assert page["next_page_token"] == ""
    cross, enter = page["events"]
    assert {k: v for k, v in cross.items() if k != "id"} == {
        "source_id": "default", "kind": "line_cross", "at": "2025-01-01T12:00:01Z",
        "zone": "gate", "class_name": "person", "track_id": 7, "direction": "out",
        "cleared": False, "detail": "", "has_snapshot": True,
    }  # fmt: skip
    assert (enter["kind"], enter["direction"], enter["has_snapshot"]) == ("zone_enter", None, False)

    only = await client.get("/api/events", params={"kind": ["zone_enter"], "source_id": "default"})
    assert [e["kind"] for e in only.json()["events"]] == ["zone_enter"]
    window = await client.get(
        "/api/events", params={"start": "2025-01-01T12:00:01Z", "end": "2025-01-01T12:00:02Z"}
    )
    assert [e["kind"] for e in window.json()["events"]] == ["line_cross"]
    first = (await client.get("/api/events", params={"page_size": 1})).json()
    rest = await client.get("/api/events", params={"page_token": first["next_page_token"]})
    assert [e["id"] for e in first["events"] + rest.json()["events"]] == [cross["id"], enter["id"]]
    bad = await client.get("/api/events", params={"kind": "zone_dance"})
    assert bad.status_code == 400, bad.text
