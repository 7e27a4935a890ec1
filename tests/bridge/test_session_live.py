"""Sessions while a job runs and while an answer streams, over ``/ws/session`` and Socket.IO: a
scripted engine holds the job at inference (or the answer after its first word) until the test
lets it go, so "late" and "mid-chat" are states the test is sure of, not races it hopes to win."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from analyzer_service.server import AnalyzerServer
from tests.bridge.session_clients import (
    TRANSPORTS,
    Bridge,
    Transport,
    get_job,
    job_events,
    join,
    list_jobs,
    nothing_pending,
    session,
    shape,
    start_job,
    wait_finished,
)
from tests.vigil.standin import ScriptedEngine

pytestmark = pytest.mark.timeout(60)

# Seed sampling, no detection pass: held after the thinking event (sequence 5).
EXPECTED = [
    ("analysis_progress", 10.0, "initialization"),
    ("analysis_progress", 25.0, "frame_extraction"),
    ("analysis_progress", 50.0, "frame_extraction"),
    ("analysis_progress", 75.0, "ai_inference"),
    ("ai_thinking", None, None),
    ("analysis_progress", 100.0, "complete"),
    ("analysis_complete", None, None),
]
HELD_AT = 5


@pytest.fixture
async def bridge(start_bridge: Any, detector: Any, scripted: AnalyzerServer) -> Bridge:
    running: Bridge = await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{scripted.port}"
    )
    return running


async def held_at_inference(engine: ScriptedEngine) -> None:
    async with asyncio.timeout(15):
        while not engine.requests:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_late_join_while_running_then_reconnect(
    transport: Transport,
    bridge: Bridge,
    engine: ScriptedEngine,
    gate: asyncio.Event,
    video_file: pathlib.Path,
) -> None:
    job_id = await start_job(bridge, video_file)
    await held_at_inference(engine)
    running = await get_job(bridge, job_id)
    assert (running["state"], running["percent"]) == ("running", 75.0)

    async with session(bridge, transport) as late:
        assert (await join(late, job_id=job_id))["after_sequence"] == 0
        replay = await job_events(late, HELD_AT)
        # The job is held: its story so far, and nothing invented after it.
        await nothing_pending(late)
        # The connection is lost (a closed laptop lid) ...
        await late.drop()
    assert (await get_job(bridge, job_id))["state"] == "running"

    # ... and comes back with the last sequence it saw; another client saw only up to 3.
    async with session(bridge, transport) as again, session(bridge, transport) as midway:
        assert (await join(again, job_id=job_id, after_sequence=HELD_AT))["after_sequence"] == 5
        await nothing_pending(again)
        assert (await join(midway, job_id=job_id, last_sequence=3))["after_sequence"] == 3
        caught_up = await job_events(midway, HELD_AT - 3)
        await nothing_pending(midway)
        # Released: the rest arrives live on both, once.
        gate.set()
        live = await job_events(again, len(EXPECTED) - HELD_AT)
        midway_live = await job_events(midway, len(EXPECTED) - HELD_AT)
        await nothing_pending(again)
        await nothing_pending(midway)

    story = replay + live
    assert shape(story) == EXPECTED
    assert [data["sequence"] for _, data in story] == list(range(1, len(EXPECTED) + 1))
    assert [d["sequence"] for _, d in caught_up + midway_live] == list(range(4, len(EXPECTED) + 1))
    # The same events, not look-alikes: what the one saw live the other saw too.
    assert caught_up == replay[3:]
    assert midway_live == live
    assert live[-1][1]["result"]["summary"] == "".join(engine.words)
    # Joining, dropping and rejoining started no second job and cancelled none.
    jobs = await list_jobs(bridge)
    assert [(job["id"], job["state"]) for job in jobs] == [(job_id, "succeeded")]
    assert [request.request_id for request in engine.requests] == [job_id]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_leaving_mid_chat_aborts_the_answer_not_the_job(
    transport: Transport,
    bridge: Bridge,
    scripted: AnalyzerServer,
    engine: ScriptedEngine,
    gate: asyncio.Event,
    video_file: pathlib.Path,
) -> None:
    gate.set()
    job_id = await start_job(bridge, video_file)
    finished = await wait_finished(bridge, job_id)
    assert finished["state"] == "succeeded"
    gate.clear()  # the answer now stops after its first word

    async with session(bridge, transport) as conn:
        await conn.send("chat", {"question": "Who is there?", "job_id": job_id})
        name, first = await conn.next_event()
        assert (name, first["delta"], first["done"]) == ("chat_response", engine.words[0], False)
        chat_id = engine.requests[-1].request_id
        assert chat_id != job_id
        assert engine.aborted == []
        await conn.drop()

    async with asyncio.timeout(5):
        while chat_id not in engine.aborted:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert engine.aborted == [chat_id]
    assert engine.closed_early == [chat_id]
    # The job is as it was: same state, result and timestamps; nothing half-said was kept.
    assert await get_job(bridge, job_id) == finished
    assert await scripted.jobs.store.chat_turns(job_id) == []
    assert [job["id"] for job in await list_jobs(bridge)] == [job_id]
