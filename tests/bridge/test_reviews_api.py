"""``POST /api/incidents/{id}/review`` and ``GET /api/incidents/stats`` against a real detector,
with the page's live feed relaying the REVIEWED event and errors from the one table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.bridge.conftest import DetectorHandle, RunningBridge, StartBridge
from tests.bridge.test_incident_feed import following
from tests.detector_service.test_reviews import close_incident, open_incident


@pytest.fixture
async def bridge(start_bridge: StartBridge, detector: DetectorHandle) -> RunningBridge:
    return await start_bridge(detector_address=detector.address)


@pytest.fixture
async def client(bridge: RunningBridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as c:
        yield c


async def feed(ws: ClientConnection, event: str) -> dict[str, Any]:
    """The next incident message of the feed with this ``event``."""
    async with asyncio.timeout(10):
        while True:
            message = orjson.loads(await ws.recv())
            if message["type"] == "incident" and message["event"] == event:
                found: dict[str, Any] = message
                return found


async def test_review_through_the_api_is_kept_fed_and_counted(
    bridge: RunningBridge, detector: DetectorHandle, client: httpx.AsyncClient
) -> None:
    assert detector.server is not None
    async with connect(f"{bridge.ws}/ws/incidents") as ws:
        await following(detector)
        start = time.time_ns()
        open_incident(detector.server, "door", start)
        close_incident(detector.server, "door", start)
        opened = (await feed(ws, "opened"))["incident"]
        assert (opened["review"], opened["false_alarm"]) == (None, False)
        await feed(ws, "closed")

        answer = await client.post(
            f"/api/incidents/{opened['id']}/review",
            json={"decision": "dismissed", "note": "a phone"},
        )
        assert answer.status_code == 200, answer.text
        reviewed = answer.json()
        assert reviewed["id"] == opened["id"]
        assert reviewed["false_alarm"] is True
        review = reviewed["review"]
        assert (review["decision"], review["note"], review["reviewer"]) == (
            "dismissed",
            "a phone",
            "",
        )
        assert review["reviewed_at"].endswith("Z")
        message = await feed(ws, "reviewed")
        assert message["incident"]["review"]["decision"] == "dismissed"
        assert message["incident"]["false_alarm"] is True

    (listed,) = (await client.get("/api/incidents")).json()["incidents"]
    assert (listed["review"]["decision"], listed["false_alarm"]) == ("dismissed", True)
    stats = (await client.get("/api/incidents/stats")).json()["stats"]
    assert stats == [
        {
            "source_id": "door", "class_name": "knife", "rule_id": "", "incidents": 1,
            "false_alarms": 1, "confirmed": 0, "dismissed": 1, "rejected": 0,
            "false_alarm_rate": 1.0,
        }
    ]  # fmt: skip

    answer = await client.post(
        f"/api/incidents/{opened['id']}/review", json={"decision": "confirmed"}
    )
    assert answer.json()["false_alarm"] is False
    (row,) = (await client.get("/api/incidents/stats", params={"source_id": "door"})).json()[
        "stats"
    ]
    assert (row["false_alarms"], row["confirmed"], row["false_alarm_rate"]) == (0, 1, 0.0)
    assert (await client.get("/api/incidents/stats", params={"source_id": "hall"})).json() == {
        "stats": []
    }
    later = (
        await client.get("/api/incidents/stats", params={"since": "2999-01-01T00:00:00Z"})
    ).json()
    assert later == {"stats": []}


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/api/incidents/nope/review", {"decision": "confirmed"}, 404, "NOT_FOUND"),
        ("/api/incidents/nope/review", {"decision": "maybe"}, 400, "INVALID_ARGUMENT"),
        ("/api/incidents/nope/review", {}, 400, "INVALID_ARGUMENT"),
        (
            "/api/incidents/nope/review",
            {"decision": "dismissed", "note": "n" * 501},
            400,
            "INVALID_ARGUMENT",
        ),
        # The reviewer is the bridge's to say, never the browser's.
        (
            "/api/incidents/nope/review",
            {"decision": "dismissed", "reviewer": "x"},
            400,
            "INVALID_ARGUMENT",
        ),
        ("/api/incidents/not%20an%20id/review", {"decision": "confirmed"}, 400, "INVALID_ARGUMENT"),
    ],
)
async def test_bad_reviews_get_the_error_table_s_answers(
    client: httpx.AsyncClient, path: str, body: dict[str, str], status: int, code: str
) -> None:
    answer = await client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code


async def test_stats_refuse_a_bad_source_and_say_when_the_detector_is_away(
    client: httpx.AsyncClient, detector: DetectorHandle
) -> None:
    answer = await client.get("/api/incidents/stats", params={"source_id": "no spaces"})
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_ARGUMENT")
    await detector.stop()
    for answer in (
        await client.get("/api/incidents/stats"),
        await client.post("/api/incidents/abc/review", json={"decision": "confirmed"}),
    ):
        assert (answer.status_code, answer.json()["code"]) == (503, "UNAVAILABLE")
        assert answer.headers["Retry-After"]


async def test_openapi_lists_the_review_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/api/incidents/{incident_id}/review"]
    assert "get" in paths["/api/incidents/stats"]
    assert "404" in paths["/api/incidents/{incident_id}/review"]["post"]["responses"]
