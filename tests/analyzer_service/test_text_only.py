"""A text-only model over real gRPC: no frames go to it, the timestamped timeline does.

Whether the model reads images is said by the settings (``VIGIL_ANALYZER_MODEL_ACCEPTS_IMAGES``)
or by the engine itself (``accepts_images``); either way the analysis and chat run without images.
"""

from __future__ import annotations

import pathlib

import pytest

from analyzer_service import prompting
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    connect,
    events_of,
    is_chat,
    kinds,
    upload,
    write_scenes,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="session")
def scenes_video(videos: pathlib.Path) -> bytes:
    """6 s at 10 fps: black, grey from 2 s to 4 s, black again (two scene changes)."""
    path = videos / "scenes.mp4"
    write_scenes(path, [(2.0, (0, 0, 0)), (2.0, (200, 200, 200)), (2.0, (0, 0, 0))])
    return path.read_bytes()


@pytest.mark.parametrize("told_by", ["settings", "engine"])
async def test_a_text_only_model_gets_the_timeline_not_the_frames(
    start_server: StartServer, settings: AnalyzerSettings, scenes_video: bytes, told_by: str
) -> None:
    engine = FakeEngine(
        text="Nothing unusual happens.",
        chat_text="The picture changes at [00:02].",
        accepts_images=False if told_by == "engine" else None,
    )
    custom = settings.model_copy(update={"model_accepts_images": told_by == "engine"})
    server = await start_server(custom, engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, scenes_video)).job.id
        events = await events_of(stub, job_id)
        assert kinds(events)[-1] == "complete", events[-1]
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        answer = [
            r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="What changes?"))
        ]

    assert job.state == pb.JOB_STATE_SUCCEEDED
    result = job.result
    frames = len(result.frames)
    scene_changes = [e for e in result.timeline if e.description == "scene change"]
    assert scene_changes, "the video's cuts should be on the timeline"
    (inference,) = [e.progress for e in events if e.progress.stage == pb.STAGE_INFERENCE]
    assert inference.message == f"fake/model reading the timeline of {frames} frames..."
    (thinking,) = [e.thinking for e in events if e.HasField("thinking")]
    assert thinking.frame_count == frames
    assert result.summary.split() == engine.text.split()
    assert any("reads text only" in note for note in result.notes)

    # The summary's prompt: no images, the sampled moments and every line of the timeline.
    summary, chat = engine.requests
    assert not is_chat(summary)
    assert (list(summary.images), list(summary.labels)) == ([], [])
    assert summary.prompt.startswith(prompting.TEXT_ONLY_PROMPT)
    moments = ", ".join(prompting.clock(f.time_s) for f in result.frames)
    assert f"Moments sampled from it: {moments}." in summary.prompt
    lines = prompting.timeline_lines(result.timeline)
    assert any("scene change" in line for line in lines)
    for line in lines:
        assert line in summary.prompt

    # Chat too: no images, the timeline and the summary in the prompt, the answer streamed.
    assert is_chat(chat)
    assert (list(chat.images), list(chat.labels)) == ([], [])
    assert chat.prompt.startswith(prompting.TEXT_ONLY_CHAT_PROMPT)
    for line in lines:
        assert line in chat.prompt
    assert "Summary of the video written earlier:" in chat.prompt
    assert chat.prompt.endswith("Question: What changes?")
    *deltas, final = answer
    assert deltas
    assert final.done
    assert final.text == "".join(r.delta for r in deltas)
    assert list(final.cited_times_s) == [2.0]
