"""Session clients for the protocol tests: ``/ws/session`` and Socket.IO behind one interface, so
each test makes the same assertions over both transports, and the HTTP calls that start jobs."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import httpx
import orjson
import socketio
from websockets.asyncio.client import ClientConnection, connect

Transport = Literal["ws", "sio"]
TRANSPORTS: list[Transport] = ["ws", "sio"]
Event = tuple[str, dict[str, Any]]


class Bridge(Protocol):
    @property
    def http(self) -> str: ...

    @property
    def ws(self) -> str: ...


class Session(Protocol):
    async def send(self, event: str, data: dict[str, Any] | None = None) -> None: ...

    async def next_event(self, within: float = 10.0) -> Event: ...

    async def drop(self) -> None:
        """Go away without saying goodbye (a closed tab, a lost network)."""
        ...


class WsSession:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send(orjson.dumps({"event": event, "data": data or {}}).decode())

    async def next_event(self, within: float = 10.0) -> Event:
        message = orjson.loads(await asyncio.wait_for(self.ws.recv(), within))
        assert set(message) == {"event", "data"}, message
        return message["event"], message["data"]

    async def drop(self) -> None:
        # No close frame: the bridge learns of it from the TCP connection alone.
        self.ws.transport.abort()
        await self.ws.wait_closed()


class SioSession:
    def __init__(self, client: socketio.AsyncClient) -> None:
        self.client = client
        self.received: asyncio.Queue[Event] = asyncio.Queue()

        # Every event, known or not, so an unexpected one shows up in the assertions.
        def anything(event: str, data: dict[str, Any]) -> None:
            self.received.put_nowait((event, data))

        client.on("*", anything)

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        await self.client.emit(event, data or {})

    async def next_event(self, within: float = 10.0) -> Event:
        return await asyncio.wait_for(self.received.get(), within)

    async def drop(self) -> None:
        await self.client.disconnect()


@contextlib.asynccontextmanager
async def session(bridge: Bridge, transport: Transport) -> AsyncIterator[Session]:
    if transport == "ws":
        async with connect(f"{bridge.ws}/ws/session") as ws:
            yield WsSession(ws)
        return
    client = socketio.AsyncClient(reconnection=False)
    sio = SioSession(client)
    await client.connect(bridge.http, transports=["websocket"], wait_timeout=5)
    try:
        yield sio
    finally:
        await client.disconnect()


async def job_events(conn: Session, count: int) -> list[Event]:
    """The next ``count`` job events (``session_joined`` acknowledgements skipped)."""
    events: list[Event] = []
    while len(events) < count:
        name, data = await conn.next_event()
        if name != "session_joined":
            events.append((name, data))
    return events


async def join(conn: Session, **data: Any) -> dict[str, Any]:
    """``join_session`` and its acknowledgement, which must be the very next event."""
    await conn.send("join_session", data)
    name, joined = await conn.next_event()
    assert name == "session_joined", (name, joined)
    return joined


async def nothing_pending(conn: Session) -> None:
    """Nothing was sent before now: a ping's pong is the next event (one connection's events go
    out in order, so anything already sent would come first)."""
    await conn.send("ping", {"probe": True})
    name, data = await conn.next_event()
    assert (name, data.get("probe")) == ("pong", True), (name, data)


def shape(events: list[Event]) -> list[tuple[str, Any, Any]]:
    return [(name, data.get("percent"), data.get("stage")) for name, data in events]


async def upload(
    bridge: Bridge, video: pathlib.Path, *, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20, headers=headers) as client:
        response = await client.post(
            "/api/videos",
            params={"name": video.name, **params},
            content=video.read_bytes(),  # noqa: ASYNC240
        )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def start_job(bridge: Bridge, video: pathlib.Path) -> str:
    uploaded = await upload(bridge, video)
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        response = await client.post("/api/analyses", json={"video_id": uploaded["video"]["id"]})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def get_job(bridge: Bridge, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        response = await client.get(f"/api/analyses/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def list_jobs(bridge: Bridge) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        response = await client.get("/api/analyses")
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


async def wait_finished(bridge: Bridge, job_id: str, within: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while (job := await get_job(bridge, job_id))["state"] in {"queued", "running"}:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return job
