"""Watch rules and the camera's time zone in the source JSON: ``PUT /api/sources/{id}`` on a real
detector, with each rule's status in the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(30)

YARD = {"name": "yard", "kind": "area", "points": [[0, 0], [1, 0], [1, 1]], "classes": [],
        "loiter_s": 0.0, "direction": None}  # fmt: skip
FENCE = {
    "id": "fence", "condition": "someone climbs the fence", "classes": ["person"],
    "zones": ["yard"], "min_dwell_s": 2.0, "motion": True, "check_interval_s": 5.0,
    "budget_per_hour": 30, "incident_kind": "intrusion", "active_start": "22:00",
    "active_end": "06:00", "disabled": False,
}  # fmt: skip
LYING = {**FENCE, "id": "lying", "condition": "a person lying on the floor", "classes": [],
         "zones": [], "min_dwell_s": 0.0, "motion": False, "check_interval_s": 0.0,
         "budget_per_hour": 0, "incident_kind": "", "active_start": "", "active_end": "",
         "disabled": True}  # fmt: skip


@pytest.fixture
async def client(start_bridge: Any, detector: Any) -> AsyncIterator[httpx.AsyncClient]:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


async def test_put_sets_watch_rules_and_reports_their_status(client: httpx.AsyncClient) -> None:
    (default,) = (await client.get("/api/sources")).json()["sources"]
    assert (default["spec"]["watch_rules"], default["spec"]["time_zone"]) == ([], "")
    assert default["watch_rule_status"] == []
    spec = {**default["spec"], "zones": [YARD], "watch_rules": [FENCE, LYING],
            "time_zone": "Europe/Berlin"}  # fmt: skip

    updated = await client.put("/api/sources/default", json=spec)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["spec"]["watch_rules"] == [FENCE, LYING]
    assert body["spec"]["time_zone"] == "Europe/Berlin"
    assert [(s["rule_id"], s["checks"], s["last_reason"]) for s in body["watch_rule_status"]] == [
        ("fence", 0, ""),
        ("lying", 0, ""),
    ]
    listed = (await client.get("/api/sources")).json()["sources"][0]
    assert listed["spec"]["watch_rules"] == [FENCE, LYING]
    # A spec without rules or time zone (a client that knows nothing of them) keeps them.
    without = {k: v for k, v in spec.items() if k not in ("watch_rules", "time_zone")}
    kept = (await client.put("/api/sources/default", json=without)).json()["spec"]
    assert (kept["watch_rules"], kept["time_zone"]) == ([FENCE, LYING], "Europe/Berlin")
    removed = await client.put("/api/sources/default", json={**spec, "watch_rules": [LYING]})
    assert [s["rule_id"] for s in removed.json()["watch_rule_status"]] == ["lying"]

    # The detector's rules, in its words, through the one error table.
    for bad, words in (
        ({"time_zone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA time zone"),
        ({"watch_rules": [{**FENCE, "zones": ["moon"]}]}, "names 'moon', which is not an area"),
        ({"watch_rules": [{**FENCE, "active_end": "22:00"}]}, "start and end must differ"),
        ({"watch_rules": [FENCE, FENCE]}, "rule ids must be unique"),
    ):
        refused = await client.put("/api/sources/default", json={**spec, **bad})
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "INVALID_ARGUMENT"
        assert words in refused.json()["message"]
    # The bridge's own checks: the shape of the JSON.
    for shape in ({**FENCE, "condition": ""}, {**FENCE, "budget_per_hour": -1}, {"id": "x"}):
        refused = await client.put("/api/sources/default", json={**spec, "watch_rules": [shape]})
        assert refused.status_code == 400, (shape, refused.text)
        assert refused.json()["code"] == "INVALID_ARGUMENT"
    final = (await client.get("/api/sources")).json()["sources"][0]["spec"]
    assert [r["id"] for r in final["watch_rules"]] == ["lying"]


async def test_post_keeps_the_zones_and_rules_a_new_source_is_given(
    client: httpx.AsyncClient,
) -> None:
    spec = {"id": "gate", "kind": "test_pattern", "zones": [YARD], "watch_rules": [FENCE],
            "time_zone": "Asia/Tokyo", "incident_zones": ["yard"]}  # fmt: skip
    added = await client.post("/api/sources", json=spec)
    assert added.status_code == 201, added.text
    listed = {
        s["spec"]["id"]: s["spec"] for s in (await client.get("/api/sources")).json()["sources"]
    }
    gate = listed["gate"]
    assert gate["watch_rules"] == [FENCE]
    assert (gate["time_zone"], gate["incident_zones"]) == ("Asia/Tokyo", ["yard"])
    assert [z["name"] for z in gate["zones"]] == ["yard"]
    # Refused whole, as the detector words it; nothing is added.
    bad = {**spec, "id": "gate2", "watch_rules": [{**FENCE, "zones": ["moon"]}]}
    refused = await client.post("/api/sources", json=bad)
    assert refused.status_code == 400, refused.text
    assert "names 'moon', which is not an area" in refused.json()["message"]
    ids = [s["spec"]["id"] for s in (await client.get("/api/sources")).json()["sources"]]
    assert "gate2" not in ids
