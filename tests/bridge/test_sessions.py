"""Analysis sessions end to end: a real analyzer and detector, the bridge under uvicorn, real
WebSocket and Socket.IO clients."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import orjson
import pytest
import socketio
from websockets.asyncio.client import ClientConnection, connect

from tests.bridge.session_clients import shape, start_job, upload, wait_finished

pytestmark = pytest.mark.timeout(30)

# The seed's stages, as the analyzer (no model, seed sampling, no detection pass) reports them:
# 10 % start, 25 % extracting, 50 % "Extracted N frames", 75 % the model stage (here: building
# the timeline without a model), 100 % complete, then the result.
EXPECTED = [
    ("analysis_progress", 10.0, "initialization"),
    ("analysis_progress", 25.0, "frame_extraction"),
    ("analysis_progress", 50.0, "frame_extraction"),
    ("analysis_progress", 75.0, "ai_inference"),
    ("analysis_progress", 100.0, "complete"),
    ("analysis_complete", None, None),
]
COUNT = len(EXPECTED)
SEQUENCES = list(range(1, COUNT + 1))


async def send(ws: ClientConnection, event: str, data: dict[str, Any] | None = None) -> None:
    await ws.send(orjson.dumps({"event": event, "data": data or {}}).decode())


async def next_event(ws: ClientConnection, within: float = 10.0) -> tuple[str, dict[str, Any]]:
    message = orjson.loads(await asyncio.wait_for(ws.recv(), within))
    assert set(message) == {"event", "data"}
    return message["event"], message["data"]


async def job_events(ws: ClientConnection, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` job events (session_joined acknowledgements skipped)."""
    events: list[tuple[str, dict[str, Any]]] = []
    while len(events) < count:
        name, data = await next_event(ws)
        if name != "session_joined":
            events.append((name, data))
    return events


@pytest.fixture
async def bridge(start_bridge: Any, detector: Any, analyzer: Any) -> Any:
    return await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{analyzer.port}"
    )


async def test_join_gets_the_exact_event_sequence(bridge: Any, video_file: pathlib.Path) -> None:
    async with connect(f"{bridge.ws}/ws/session") as ws:
        job_id = await start_job(bridge, video_file)
        await send(ws, "join_session", {"job_id": job_id})
        name, joined = await next_event(ws)
        assert (name, joined) == (
            "session_joined",
            {"session_id": job_id, "job_id": job_id, "after_sequence": 0},
        )
        events = await job_events(ws, COUNT)
    assert shape(events) == EXPECTED
    assert [data["sequence"] for _, data in events] == SEQUENCES
    assert all(data["job_id"] == job_id for _, data in events)
    assert events[0][1]["message"] == "Starting video analysis..."
    assert events[2][1]["message"].startswith("Extracted 3 frames")
    result = events[-1][1]["result"]
    assert len(result["frames"]) == 3
    assert any("No language model" in note for note in result["notes"])


async def test_late_join_replays_then_reconnect_resumes_without_duplicates(
    bridge: Any, video_file: pathlib.Path
) -> None:
    job_id = await start_job(bridge, video_file)
    await wait_finished(bridge, job_id)
    # Joining after the job ended replays its whole story.
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await send(ws, "join_session", {"session_id": job_id})
        replay = await job_events(ws, COUNT)
    assert shape(replay) == EXPECTED
    # A client that saw up to sequence 2 reconnects: it gets 3 onwards only, and nothing else.
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await send(ws, "join_session", {"job_id": job_id, "after_sequence": 2})
        resumed = await job_events(ws, COUNT - 2)
        await send(ws, "ping")
        assert (await next_event(ws))[0] == "pong"
        # Joining again on the same connection resumes from what it already sent: nothing new.
        await send(ws, "join_session", {"job_id": job_id})
        name, joined = await next_event(ws)
        assert (name, joined["after_sequence"]) == ("session_joined", COUNT)
        await send(ws, "ping")
        assert (await next_event(ws))[0] == "pong"
    assert [d["sequence"] for _, d in resumed] == SEQUENCES[2:]
    assert shape(resumed) == EXPECTED[2:]
    # Joining and leaving started no second job and cancelled none.
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        listed = (await client.get("/api/analyses")).json()
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    assert listed["jobs"][0]["state"] == "succeeded"


async def test_join_before_the_job_exists_then_upload_with_the_session(
    bridge: Any, video_file: pathlib.Path
) -> None:
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await send(ws, "join_session", {"session_id": "browser-tab-1"})
        name, joined = await next_event(ws)
        assert (name, joined["job_id"]) == ("session_joined", None)
        uploaded = await upload(bridge, video_file, analyze="true", session_id="browser-tab-1")
        events = await job_events(ws, COUNT)
    assert shape(events) == EXPECTED
    assert {d["job_id"] for _, d in events} == {uploaded["job"]["id"]}
    assert {d["session_id"] for _, d in events} == {"browser-tab-1"}


async def test_leaving_never_cancels_the_job(bridge: Any, video_file: pathlib.Path) -> None:
    async with connect(f"{bridge.ws}/ws/session") as ws:
        job_id = await start_job(bridge, video_file)
        await send(ws, "join_session", {"job_id": job_id})
        await send(ws, "leave_session")
        names = [(await next_event(ws))[0] for _ in range(2)]
        assert "session_left" in names
    await wait_finished(bridge, job_id)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        job = (await client.get(f"/api/analyses/{job_id}")).json()
    # It ran to its own end, not CANCELLED.
    assert job["state"] == "succeeded"


async def test_ping_and_bad_messages_keep_the_connection(bridge: Any) -> None:
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await send(ws, "chat", {"question": "who is there?"})
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "NO_SESSION")
        await send(ws, "ping", {"t": 1})
        name, pong = await next_event(ws)
        assert name == "pong"
        assert pong["t"] == 1
        assert isinstance(pong["server_time"], float)
        await send(ws, "dance")
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "UNKNOWN_EVENT")
        await ws.send("{not json")
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "INVALID_JSON")
        await ws.send(b"\x00\x01binary")
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "INVALID_MESSAGE")
        await ws.send('["join_session"]')
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "INVALID_MESSAGE")
        await send(ws, "join_session", {"job_id": 5})
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "INVALID_ARGUMENT")
        assert "job_id" in error["message"]
        await send(ws, "join_session", {"job_id": "no-such-job"})
        assert (await next_event(ws))[0] == "session_joined"
        name, error = await next_event(ws)
        assert (name, error["code"]) == ("error", "NOT_FOUND")
        # Still open and answering.
        await send(ws, "ping")
        assert (await next_event(ws))[0] == "pong"


async def test_chat_without_a_model_is_refused_plainly(
    bridge: Any, video_file: pathlib.Path
) -> None:
    job_id = await start_job(bridge, video_file)
    async with connect(f"{bridge.ws}/ws/session") as ws:
        await send(ws, "chat", {"question": "what happens?", "job_id": job_id})
        name, error = await next_event(ws)
    assert (name, error["code"]) == ("error", "MODEL_NOT_CONFIGURED")
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        response = await client.post(f"/api/analyses/{job_id}/chat", json={"question": "what?"})
    assert response.status_code == 409
    assert response.json()["code"] == "MODEL_NOT_CONFIGURED"


async def test_socketio_client_gets_the_same_events(bridge: Any, video_file: pathlib.Path) -> None:
    received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    client = socketio.AsyncClient(reconnection=False)
    for name in ["session_joined", "analysis_progress", "error", "pong", "analysis_complete"]:

        def handler(data: dict[str, Any], name: str = name) -> None:
            received.put_nowait((name, data))

        client.on(name, handler)
    await client.connect(bridge.http, transports=["websocket"], wait_timeout=5)
    try:
        job_id = await start_job(bridge, video_file)
        await client.emit("join_session", {"session_id": job_id})
        events: list[tuple[str, dict[str, Any]]] = []
        async with asyncio.timeout(10):
            while len(events) < COUNT:
                name, data = await received.get()
                if name != "session_joined":
                    events.append((name, data))
        await client.emit("ping", {"t": 2})
        async with asyncio.timeout(5):
            name, data = await received.get()
        assert (name, data["t"]) == ("pong", 2)
        await client.emit("no_such_event", {})
        async with asyncio.timeout(5):
            name, data = await received.get()
        assert (name, data["code"]) == ("error", "UNKNOWN_EVENT")
    finally:
        await client.disconnect()
    assert shape(events) == EXPECTED
    assert [d["sequence"] for _, d in events] == SEQUENCES
    assert events[-1][1]["result"]["frames"]
