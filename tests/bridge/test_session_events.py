"""Every session event over ``/ws/session`` and Socket.IO alike, with a real analyzer whose model
is scripted (``tests.vigil.standin.ScriptedEngine``: a random model cannot be made to say known
words), its coarse detection pass on a real detector, and a generated video over an hour."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from analyzer_service.server import AnalyzerServer
from tests.bridge.session_clients import (
    TRANSPORTS,
    Bridge,
    Transport,
    job_events,
    join,
    nothing_pending,
    session,
    shape,
    start_job,
)
from tests.vigil.standin import ScriptedEngine

pytestmark = pytest.mark.timeout(60)

TEXT = "A square moves right at [00:01]."
# Seed sampling (3 frames of a short video), the detector's pass, then the model.
EXPECTED = [
    ("analysis_progress", 10.0, "initialization"),
    ("analysis_progress", 25.0, "frame_extraction"),
    ("analysis_progress", 40.0, "detection"),
    ("analysis_progress", 45.0, "detection"),
    ("analysis_progress", 50.0, "frame_extraction"),
    ("analysis_progress", 75.0, "ai_inference"),
    ("ai_thinking", None, None),
    ("analysis_progress", 100.0, "complete"),
    ("analysis_complete", None, None),
]
TIMINGS = {"probe_s", "sampling_s", "detection_s", "inference_s", "total_s"}


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine(TEXT)


@pytest.fixture
async def scripted(start_analyzer: Any, detector: Any, engine: ScriptedEngine) -> AnalyzerServer:
    server: AnalyzerServer = await start_analyzer(
        engine, detection_pass=True, detector_address=detector.address
    )
    return server


@pytest.fixture
async def bridge(start_bridge: Any, detector: Any, scripted: AnalyzerServer) -> Bridge:
    running: Bridge = await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{scripted.port}"
    )
    return running


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_analysis_events_then_a_streamed_chat(
    transport: Transport, bridge: Bridge, engine: ScriptedEngine, video_file: pathlib.Path
) -> None:
    async with session(bridge, transport) as conn:
        job_id = await start_job(bridge, video_file)
        joined = await join(conn, job_id=job_id)
        assert joined == {"session_id": job_id, "job_id": job_id, "after_sequence": 0}
        events = await job_events(conn, len(EXPECTED))
        await nothing_pending(conn)

        # Asked without a job_id: the joined session's job.
        await conn.send("chat", {"question": "What moves?"})
        chunks: list[dict[str, Any]] = []
        while not chunks or not chunks[-1]["done"]:
            name, data = await conn.next_event()
            assert name == "chat_response", (name, data)
            chunks.append(data)
        # Exactly one final piece: nothing else was sent after it.
        await nothing_pending(conn)

    assert shape(events) == EXPECTED
    assert [data["sequence"] for _, data in events] == list(range(1, len(EXPECTED) + 1))
    assert {(data["session_id"], data["job_id"]) for _, data in events} == {(job_id, job_id)}
    progress = [data for name, data in events if name == "analysis_progress"]
    assert [p["message"] for p in progress[:-1]] == [
        "Starting video analysis...",
        "Extracting frames from video...",
        "Looking for weapons and people in 3 frames...",
        "No weapons seen",
        "Extracted 3 frames (0.0 min)",
        "scripted/model analyzing 3 frames...",
    ]
    assert {p["queue_position"] for p in progress} == {0}
    thinking = events[6][1]
    assert (thinking["message"], thinking["frame_count"]) == (
        "scripted/model is reading 3 frames",
        3,
    )

    complete = events[-1][1]
    result, timings = complete["result"], complete["timings"]
    assert result["summary"] == "".join(engine.words)
    assert result["model"] == "scripted/model"
    assert len(result["frames"]) == 3
    # The summary's "[00:01]" became a timeline event resting on the frame nearest it.
    assert any(1.0 in event["frame_times_s"] for event in result["timeline"])
    assert set(timings) == TIMINGS
    assert timings == result["timings"]
    # Every stage ran here (detection too), each inside the whole.
    assert all(timings[key] > 0 for key in TIMINGS), timings
    stages = timings["probe_s"] + timings["sampling_s"] + timings["detection_s"]
    assert stages + timings["inference_s"] <= timings["total_s"]
    assert progress[-1]["message"] == f"Analysis complete in {timings['total_s']:.1f}s!"
    # One generation for the summary, then the chat's, which saw the question.
    assert len(engine.requests) == 2
    assert engine.requests[0].request_id == job_id
    assert engine.requests[1].prompt.endswith("What moves?")

    assert [c["delta"] for c in chunks[:-1]] == engine.words
    assert all(set(c) == {"job_id", "delta", "done"} for c in chunks[:-1])
    assert {(c["job_id"], c["done"]) for c in chunks[:-1]} == {(job_id, False)}
    assert chunks[-1] == {
        "job_id": job_id,
        "delta": "",
        "done": True,
        "text": "".join(c["delta"] for c in chunks[:-1]),
        "cited_times": [1.0],
        "completion_tokens": len(engine.words),
    }
    assert engine.aborted == []
    assert engine.closed_early == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_video_over_an_hour_is_announced(
    transport: Transport,
    start_bridge: Any,
    detector: Any,
    analyzer: AnalyzerServer,
    long_video: pathlib.Path,
) -> None:
    bridge: Bridge = await start_bridge(
        detector_address=detector.address, analyzer_address=f"127.0.0.1:{analyzer.port}"
    )
    async with session(bridge, transport) as conn:
        job_id = await start_job(bridge, long_video)
        await join(conn, job_id=job_id)
        events = await job_events(conn, 7)
        await nothing_pending(conn)
    # The notice comes right after the start, before extraction, so a page can show it early.
    assert shape(events) == [
        ("analysis_progress", 10.0, "initialization"),
        ("long_video_detected", None, None),
        ("analysis_progress", 25.0, "frame_extraction"),
        ("analysis_progress", 50.0, "frame_extraction"),
        ("analysis_progress", 75.0, "ai_inference"),
        ("analysis_progress", 100.0, "complete"),
        ("analysis_complete", None, None),
    ]
    notice = events[1][1]
    assert (notice["job_id"], notice["session_id"], notice["sequence"]) == (job_id, job_id, 2)
    assert abs(notice["duration_s"] - 61 * 60) < 15, notice
    assert notice["duration_minutes"] == round(notice["duration_s"] / 60, 1)
    assert notice["message"] == (
        f"Long video detected ({notice['duration_minutes']:.1f} min): sampling 8 frames "
        "spread over its length."
    )
    # The seed's policy samples 8 frames from an hour on.
    assert events[3][1]["message"].startswith("Extracted 8 frames (61.")
    assert len(events[-1][1]["result"]["frames"]) == 8
