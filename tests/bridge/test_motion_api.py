"""Motion settings in the source JSON: ``PUT /api/sources/{id}`` and ``POST /api/sources`` on a
real detector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(30)

CLOCK = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.1], [0.8, 0.1]]
MOTION = {"detect_every_frame": False, "sensitivity": 0.75, "masks": [CLOCK]}
DEFAULTS = {"detect_every_frame": False, "sensitivity": 0.0, "masks": []}


@pytest.fixture
async def client(start_bridge: Any, detector: Any) -> AsyncIterator[httpx.AsyncClient]:
    bridge = await start_bridge(detector_address=detector.address)
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


async def test_put_sets_motion_and_the_detector_judges_masks(client: httpx.AsyncClient) -> None:
    (default,) = (await client.get("/api/sources")).json()["sources"]
    assert default["spec"]["motion"] == DEFAULTS
    spec = {**default["spec"], "motion": MOTION}

    updated = await client.put("/api/sources/default", json=spec)
    assert updated.status_code == 200, updated.text
    assert updated.json()["spec"]["motion"] == MOTION
    listed = (await client.get("/api/sources")).json()["sources"][0]["spec"]
    assert listed["motion"] == MOTION
    # A spec sent without motion (an older page) takes the defaults back.
    without = {k: v for k, v in spec.items() if k != "motion"}
    cleared = await client.put("/api/sources/default", json=without)
    assert cleared.json()["spec"]["motion"] == DEFAULTS

    # The detector's rules, in its words.
    two = {**MOTION, "masks": [[[0.1, 0.1], [0.2, 0.2]]]}
    refused = await client.put("/api/sources/default", json={**spec, "motion": two})
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "INVALID_ARGUMENT"
    assert "motion.masks[0] needs 3 to 64 points, got 2" in refused.json()["message"]
    off = {**MOTION, "masks": [[[0.1, 0.1], [1.5, 0.2], [0.2, 0.9]]]}
    refused = await client.put("/api/sources/default", json={**spec, "motion": off})
    assert refused.status_code == 400, refused.text
    assert "motion.masks[0]: points are normalised" in refused.json()["message"]
    # The bridge's own checks: the shape of the JSON and the sensitivity's range.
    for bad in ({"sensitivity": 1.5}, {"masks": [[[0.1]]]}, {"gate": True}):
        shape = await client.put("/api/sources/default", json={**spec, "motion": bad})
        assert shape.status_code == 400, (bad, shape.text)
    assert (await client.get("/api/sources")).json()["sources"][0]["spec"]["motion"] == DEFAULTS


async def test_post_adds_a_source_with_motion(client: httpx.AsyncClient) -> None:
    every = {"detect_every_frame": True, "sensitivity": 0.0, "masks": []}
    body = {"id": "yard", "kind": "test_pattern", "motion": every}
    added = await client.post("/api/sources", json=body)
    assert added.status_code == 201, added.text
    assert added.json()["spec"]["motion"] == every
    listed = {
        s["spec"]["id"]: s["spec"] for s in (await client.get("/api/sources")).json()["sources"]
    }
    assert listed["yard"]["motion"] == every

    bad = {"id": "x", "kind": "test_pattern", "motion": {**MOTION, "masks": [CLOCK[:2]]}}
    refused = await client.post("/api/sources", json=bad)
    assert refused.status_code == 400, refused.text
    assert "motion.masks[0] needs 3 to 64 points, got 2" in refused.json()["message"]
