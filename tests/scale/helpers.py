"""What the multi-replica tests share: the cluster's PostgreSQL rows, catching a job while the
model writes its answer, a Socket.IO follower of one analysis session, a WebSocket viewer of one
source, and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import socketio
from websockets.asyncio.client import ClientConnection

from vigil.devtools.cluster import Cluster, Replica
from vigil.sdk import AnalysisEvent, AnalyzerClient

WAIT_S = 120.0
Event = tuple[str, dict[str, Any]]


def rows(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def job_owner(cluster: Cluster, job_id: str) -> str | None:
    found = rows(cluster.spec.database_url, "SELECT owner FROM analyzer_jobs WHERE id = %s", job_id)
    return str(found[0][0]) if found and found[0][0] is not None else None


def replica_named(replicas: list[Replica], name: str | None) -> Replica:
    return next(r for r in replicas if r.name == name)


def replica_at(replicas: list[Replica], address: str) -> Replica:
    return next(r for r in replicas if r.address == address)


def history(cluster: Cluster, job_id: str, replica: Replica | None = None) -> list[AnalysisEvent]:
    """A job's whole history, read back through one analyzer (the target's choice if None)."""
    with AnalyzerClient(replica.address if replica else cluster.analyzer_target) as client:
        return list(client.events(job_id))


def thinking(cluster: Cluster, job_id: str) -> AnalysisEvent:
    """Follow a job until its ``thinking`` event: the model is writing its answer from then on,
    for seconds (the cluster's analyzers ask for long, greedy answers). A job that ends first
    fails the test: its answers must be made longer, not the test retried."""
    with AnalyzerClient(cluster.analyzer_target) as client:
        for event in client.events(job_id):
            assert not event.final, f"{job_id} ended ({event.kind}) before it was caught mid-run"
            if event.kind == "thinking":
                return event
    raise AssertionError(f"{job_id}: its events stopped before the model was reached")


def inferring(cluster: Cluster, job_ids: list[str]) -> list[str]:
    """The jobs of ``job_ids`` the model is writing an answer for (running, at the 75% stage);
    a job already ended fails the test, as in ``thinking``."""
    with AnalyzerClient(cluster.analyzer_target) as client:
        jobs = [client.get_job(job_id, timeout_s=10) for job_id in job_ids]
    ended = [job.id for job in jobs if job.finished]
    assert not ended, f"{ended} ended before they were caught mid-run"
    return [job.id for job in jobs if job.state == "running" and job.stage == "inference"]


def assert_one_history(events: list[AnalysisEvent]) -> None:
    """Gap-free, duplicate-free, one ending and it last."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.kind for e in events if e.final] == [events[-1].kind] == ["complete"]


async def until(check: Callable[[], bool], what: str, within: float = WAIT_S) -> float:
    """Poll until ``check`` holds; the seconds it took (a figure, never asserted)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"never happened: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def upload(bridge: str, video: bytes, **params: str) -> dict[str, Any]:
    """``POST /api/videos`` as the page sends it: the file as the body, analyze and session_id
    as parameters."""
    async with httpx.AsyncClient(base_url=bridge, timeout=60) as client:
        response = await client.post("/api/videos", params={"name": "clip.mp4", **params},
                                     content=video)  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class Follower:
    """A Socket.IO client of one bridge that joined an analysis session: every event it got."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: asyncio.Queue[Event] = asyncio.Queue()

        def anything(event: str, data: dict[str, Any]) -> None:
            self.received.put_nowait((event, data))

        self.client.on("*", anything)

    async def join(self, session_id: str) -> None:
        await self.client.connect(self.bridge, transports=["websocket"], wait_timeout=10)
        await self.client.emit("join_session", {"session_id": session_id})
        name, data = await asyncio.wait_for(self.received.get(), 30)
        assert name == "session_joined", (name, data)

    async def until_complete(self, within: float = WAIT_S) -> list[Event]:
        """The job's events up to ``analysis_complete``; an error event fails the test."""
        events: list[Event] = []
        async with asyncio.timeout(within):
            while not events or events[-1][0] != "analysis_complete":
                name, data = await self.received.get()
                if name == "session_joined":
                    continue
                assert name != "error", data
                events.append((name, data))
        return events

    async def close(self) -> None:
        await self.client.disconnect()


async def frames(ws: ClientConnection, count: int, within: float = WAIT_S) -> list[float]:
    """The capture times of the next ``count`` frames of a ``/ws/video-stream`` viewer (problems
    the bridge reports while it retries are skipped: the socket staying open is the point)."""
    import orjson

    times: list[float] = []
    async with asyncio.timeout(within):
        while len(times) < count:
            message = orjson.loads(await ws.recv())
            if message.get("type") == "frame":
                times.append(float(message["timestamp"]))
    return times
