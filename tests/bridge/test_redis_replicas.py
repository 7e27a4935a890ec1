"""Two real bridges sharing one Redis (``VIGIL_BRIDGE_REDIS_URL``) and one analyzer: a session
named on one bridge is followed on the other, a chat goes on across bridges, an emit on one
bridge reaches a Socket.IO client on the other, and a Redis restart mid-session is ridden out."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import pytest
import socketio
from fastapi import FastAPI
from starlette.routing import Mount

from analyzer_service.server import AnalyzerServer
from tests.bridge.conftest import RunningBridge, StartAnalyzer, StartBridge, free_port
from tests.bridge.session_clients import Session, job_events, join, session, upload
from tests.vigil.standin import ScriptedEngine
from vigil.devtools.redis_server import RedisServer

ANSWER = "A square moves right at [00:01]."


@pytest.fixture
async def analyzer_with_model(start_analyzer: StartAnalyzer) -> AnalyzerServer:
    return await start_analyzer(ScriptedEngine(ANSWER))


@pytest.fixture
async def bridges(
    start_bridge: StartBridge, analyzer_with_model: AnalyzerServer, redis_url: str
) -> tuple[RunningBridge, RunningBridge]:
    address = f"127.0.0.1:{analyzer_with_model.port}"
    one = await start_bridge(analyzer_address=address, redis_url=redis_url)
    two = await start_bridge(analyzer_address=address, redis_url=redis_url)
    return one, two


async def until_complete(conn: Session) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    while not events or events[-1][0] != "analysis_complete":
        events += await job_events(conn, 1)
        assert events[-1][0] != "error", events[-1]
    return events


async def chat(conn: Session, **data: Any) -> dict[str, Any]:
    """Ask, and the answer's last piece (``done``)."""
    await conn.send("chat", data)
    while True:
        name, piece = await conn.next_event()
        assert name == "chat_response", (name, piece)
        if piece["done"]:
            return piece


def sio_server(bridge: RunningBridge) -> socketio.AsyncServer:
    """The bridge's own Socket.IO server, found where the app mounts it."""
    app = bridge.server.config.app
    assert isinstance(app, FastAPI)
    for route in app.routes:
        if isinstance(route, Mount) and route.path == "/socket.io":
            mounted: Any = route.app
            assert isinstance(mounted, socketio.ASGIApp)
            server = mounted.engineio_server
            assert isinstance(server, socketio.AsyncServer)
            return server
    raise AssertionError("no Socket.IO mount")


async def test_a_session_named_on_one_bridge_is_followed_on_the_other(
    bridges: tuple[RunningBridge, RunningBridge], video_file: pathlib.Path
) -> None:
    one, two = bridges
    async with session(two, "sio") as conn:
        # The seed's flow, split over replicas: join first on one, upload on the other.
        joined = await join(conn, session_id="tab-1")
        assert joined["job_id"] is None
        uploaded = await upload(one, video_file, analyze="true", session_id="tab-1")
        events = await until_complete(conn)
    assert {data["session_id"] for _, data in events} == {"tab-1"}
    assert events[-1][1]["job_id"] == uploaded["job"]["id"]
    sequences = [data["sequence"] for _, data in events]
    assert sequences == sorted(set(sequences))


async def test_a_chat_joined_on_one_bridge_goes_on_on_the_other(
    bridges: tuple[RunningBridge, RunningBridge], video_file: pathlib.Path
) -> None:
    one, two = bridges
    uploaded = await upload(one, video_file, analyze="true", session_id="tab-2")
    job_id = uploaded["job"]["id"]
    async with session(one, "sio") as conn:
        await join(conn, session_id="tab-2")
        await until_complete(conn)
        first = await chat(conn, question="What moves?")
    assert (first["job_id"], first["text"].strip()) == (job_id, ANSWER)
    # The tab comes back through the other replica, by its session name alone.
    async with session(two, "sio") as conn:
        rejoined = await join(conn, session_id="tab-2", after_sequence=10**6)
        assert rejoined["job_id"] == job_id
        second = await chat(conn, question="And then?")
    assert (second["job_id"], second["text"].strip()) == (job_id, ANSWER)


async def emit_reaches(sender: RunningBridge, client: socketio.AsyncClient) -> bool:
    """Emit ``probe`` to ``client``'s sid on ``sender``; True once the client has it."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on("probe", received.put_nowait)
    await sio_server(sender).emit("probe", {"from": sender.port}, to=client.get_sid())
    try:
        data = await asyncio.wait_for(received.get(), 1.0)
    except TimeoutError:
        return False
    return bool(data == {"from": sender.port})


async def test_an_emit_on_one_bridge_reaches_a_client_on_the_other(
    bridges: tuple[RunningBridge, RunningBridge],
) -> None:
    one, two = bridges
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(two.http, transports=["websocket"], wait_timeout=5)
    try:
        # The sender's manager subscribes on its first use: the first emit may come before.
        async with asyncio.timeout(10):
            while not await emit_reaches(one, client):
                pass
    finally:
        await client.disconnect()


async def test_a_redis_restart_mid_session_is_ridden_out(
    bridges: tuple[RunningBridge, RunningBridge],
    redis_server: RedisServer,
    video_file: pathlib.Path,
) -> None:
    one, two = bridges
    async with session(two, "sio") as waiting, session(one, "ws") as by_job:
        await join(waiting, session_id="tab-3")
        redis_server.stop()
        try:
            # Redis is away: the bridges still serve; binding a name fails with a clear error,
            # joining by job id works, and a name being joined is told it is waited for.
            async with httpx.AsyncClient(base_url=one.http, timeout=20) as client:
                assert (await client.get("/health")).status_code == 200
                response = await client.post(
                    "/api/videos",
                    params={"name": video_file.name, "analyze": "true", "session_id": "lost"},
                    content=video_file.read_bytes(),  # noqa: ASYNC240
                )
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["code"] == "UNAVAILABLE", body
            assert "cannot reach Redis" in body["message"], body
            job_id = body["message"].rsplit("job ", 1)[1].split(" ")[0]
            await join(by_job, job_id=job_id)
            assert (await until_complete(by_job))[-1][1]["job_id"] == job_id
            async with session(two, "sio") as late:
                await late.send("join_session", {"session_id": "tab-3"})
                name, data = await late.next_event()
                assert (name, data["code"]) == ("error", "UNAVAILABLE"), (name, data)
                assert "waiting for it" in data["message"]
                name, data = await late.next_event()
                assert (name, data["job_id"]) == ("session_joined", None)
        finally:
            redis_server.start()
        # Back: the name joined before the restart is bound through the other bridge and
        # followed to the end, and emits cross the bridges again.
        uploaded = await upload(one, video_file, analyze="true", session_id="tab-3")
        events = await until_complete(waiting)
        assert events[-1][1]["job_id"] == uploaded["job"]["id"]
    # Each bridge's Socket.IO manager listens again and publishes again: both ways.
    for sender, receiver in ((two, one), (one, two)):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(receiver.http, transports=["websocket"], wait_timeout=5)
        try:
            async with asyncio.timeout(20):
                while not await emit_reaches(sender, client):
                    pass
        finally:
            await client.disconnect()


async def test_a_bridge_starts_and_serves_while_redis_is_down(
    start_bridge: StartBridge, analyzer_with_model: AnalyzerServer, video_file: pathlib.Path
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    address = f"127.0.0.1:{analyzer_with_model.port}"
    bridge = await start_bridge(analyzer_address=address, redis_url=nowhere)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        assert (await client.get("/health")).status_code == 200
    uploaded = await upload(bridge, video_file, analyze="true")
    async with session(bridge, "sio") as conn:
        await conn.send("ping", {"probe": 1})
        name, data = await conn.next_event()
        assert (name, data["probe"]) == ("pong", 1)
        await join(conn, job_id=uploaded["job"]["id"])
        assert (await until_complete(conn))[-1][0] == "analysis_complete"
        await conn.send("chat", {"question": "What moves?", "session_id": "tab-4"})
        name, data = await conn.next_event()
        assert (name, data["code"]) == ("error", "UNAVAILABLE"), (name, data)
        # Chat about the joined job needs no name, and is answered.
        assert (await chat(conn, question="What moves?"))["text"].strip() == ANSWER
