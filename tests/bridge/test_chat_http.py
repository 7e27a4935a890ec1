"""``POST /api/analyses/{id}/chat`` answering: NDJSON and Server-Sent Events from a real analyzer
with a scripted engine, whose gate holds the answer after its first word: that word must arrive
while the model is still held (the answer streams, it is not sent once finished), and a caller
leaving there must abort the generation."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from analyzer_service.server import AnalyzerServer
from tests.bridge.session_clients import Bridge, start_job, wait_finished
from tests.vigil.standin import ScriptedEngine

pytestmark = pytest.mark.timeout(60)

QUESTION = {"question": "What moves, and when?"}


@pytest.fixture
async def job(
    start_bridge: Any,
    detector: Any,
    scripted: AnalyzerServer,
    gate: asyncio.Event,
    video_file: pathlib.Path,
) -> tuple[Bridge, str]:
    """A bridge and a finished job, the gate closed again for the chat."""
    bridge: Bridge = await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{scripted.port}"
    )
    gate.set()
    job_id = await start_job(bridge, video_file)
    assert (await wait_finished(bridge, job_id))["state"] == "succeeded"
    gate.clear()
    return bridge, job_id


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) of each Server-Sent Event; each is one ``event:`` and one ``data:`` line."""
    fields: dict[str, str] = {}
    async for line in lines:
        if line:
            key, _, value = line.partition(": ")
            assert key in {"event", "data"}, line
            assert key not in fields, line
            fields[key] = value
            continue
        assert set(fields) == {"event", "data"}, fields
        yield fields["event"], orjson.loads(fields["data"])
        fields = {}
    assert not fields, f"a last event without its blank line: {fields}"


def check_answer(pieces: list[dict[str, Any]], engine: ScriptedEngine, job_id: str) -> None:
    assert [p["delta"] for p in pieces[:-1]] == engine.words
    assert all(p == {"job_id": job_id, "delta": p["delta"], "done": False} for p in pieces[:-1])
    assert pieces[-1] == {
        "job_id": job_id,
        "delta": "",
        "done": True,
        "text": "".join(engine.words),
        "cited_times": [1.0],
        "completion_tokens": len(engine.words),
    }


@contextlib.asynccontextmanager
async def chat(bridge: Bridge, job_id: str, **headers: str) -> AsyncIterator[httpx.Response]:
    """The chat answer's response, still streaming."""
    url = f"/api/analyses/{job_id}/chat"
    async with (
        httpx.AsyncClient(base_url=bridge.http, timeout=10) as client,
        client.stream("POST", url, json=QUESTION, headers=headers) as response,
    ):
        yield response


async def test_ndjson_pieces_then_one_final(
    job: tuple[Bridge, str], engine: ScriptedEngine, gate: asyncio.Event
) -> None:
    bridge, job_id = job
    async with chat(bridge, job_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.headers["cache-control"] == "no-cache"
        lines = response.aiter_lines()
        # The first word arrives while the model is held mid-answer.
        first = orjson.loads(await asyncio.wait_for(anext(lines), 5))
        assert first["delta"] == engine.words[0]
        gate.set()
        # Every further line is one JSON object: no blank lines, nothing else.
        rest = [orjson.loads(line) async for line in lines]
    check_answer([first, *rest], engine, job_id)


async def test_sse_pieces_then_one_final(
    job: tuple[Bridge, str], engine: ScriptedEngine, gate: asyncio.Event
) -> None:
    bridge, job_id = job
    async with chat(bridge, job_id, accept="text/event-stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = sse_events(response.aiter_lines())
        first = await asyncio.wait_for(anext(events), 5)
        assert first[1]["delta"] == engine.words[0]
        gate.set()
        rest = [event async for event in events]
    assert {name for name, _ in [first, *rest]} == {"chat_response"}
    check_answer([data for _, data in [first, *rest]], engine, job_id)


async def test_an_http_caller_leaving_aborts_the_answer(
    job: tuple[Bridge, str], scripted: AnalyzerServer, engine: ScriptedEngine
) -> None:
    bridge, job_id = job
    async with chat(bridge, job_id) as response:
        first = orjson.loads(await asyncio.wait_for(anext(response.aiter_lines()), 5))
        assert first["delta"] == engine.words[0]
    # Leaving the block closed the connection mid-answer.
    chat_id = engine.requests[-1].request_id
    async with asyncio.timeout(5):
        while chat_id not in engine.aborted:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert engine.closed_early == [chat_id]
    assert await scripted.jobs.store.chat_turns(job_id) == []
