"""Times cited as [mm:ss] in what the model says, and what the prompts show of a video; and
over real gRPC, a scripted model's citations in the result's timeline and in chat answers."""

from __future__ import annotations

import pathlib

import pytest

from analyzer_service import prompting, timeline
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    connect,
    events_of,
    kinds,
    upload,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.common.v1 import common_pb2


def test_cited_times_are_parsed_in_order_without_repeats() -> None:
    text = "At [00:12] a car; at [01:05] two people, [00:12] again, [1:02:03] late, [7:61] no."
    assert timeline.cited_times(text) == [12.0, 65.0, 3723.0]
    # Times past the end of the video are what the model made up.
    assert timeline.cited_times(text, duration_s=70.0) == [12.0, 65.0]
    assert timeline.cited_times("no times here") == []


def test_each_sentence_citing_times_becomes_an_event_on_the_nearest_frames() -> None:
    knife = common_pb2.Detection(class_name="knife", confidence=0.9, is_weapon=True)
    frames = [
        pb.SampledFrame(time_s=0.0),
        pb.SampledFrame(time_s=10.0, detections=[knife]),
        pb.SampledFrame(time_s=20.0),
    ]
    summary = (
        "The yard is empty. A man shows a knife from [00:09] to [00:12]!\n"
        "He leaves at [00:21]. Then [09:59] nothing."
    )
    events = timeline.model_events(summary, frames, duration_s=25.0)
    assert [(e.start_s, e.end_s) for e in events] == [(9.0, 12.0), (21.0, 21.0)]
    assert events[0].description == "A man shows a knife from [00:09] to [00:12]!"
    assert list(events[0].frame_times_s) == [10.0]
    assert [d.class_name for d in events[0].detections] == ["knife"]
    assert list(events[1].frame_times_s) == [20.0]
    merged = timeline.merge([pb.TimelineEvent(start_s=15.0, end_s=15.0)], events)
    assert [e.start_s for e in merged] == [9.0, 15.0, 21.0]


def test_frames_for_the_model_are_spread_and_labelled() -> None:
    assert prompting.pick(3, 4) == [0, 1, 2]
    assert prompting.pick(10, 4) == [0, 3, 6, 9]
    frames = [pb.SampledFrame(time_s=float(n * 30)) for n in range(10)]
    files = [pathlib.Path(f"{n}.jpg") for n in range(10)]
    shown = prompting.frames_for_model(frames, files, limit=4, images=True)
    assert shown.files == [files[0], files[3], files[6], files[9]]
    assert shown.labels == ["[00:00]", "[01:30]", "[03:00]", "[04:30]"]
    assert prompting.frames_for_model(frames, files, limit=4, images=False).files == []


def test_a_text_only_prompt_lists_the_sampled_moments_and_the_timeline() -> None:
    video = pb.Video(duration_s=300.0)
    frames = [pb.SampledFrame(time_s=t) for t in (5.0, 65.0)]
    events = [pb.TimelineEvent(start_s=5.0, end_s=65.0, description="knife seen")]
    none = prompting.Frames([], [])
    text = prompting.context(video, frames, events, shown=none, summary="Quiet.")
    assert "Moments sampled from it: [00:05], [01:05]." in text
    assert "- [00:05]-[01:05] knife seen" in text
    assert text.endswith("Summary of the video written earlier:\nQuiet.")


SEED = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)


async def test_times_the_model_cites_reach_the_timeline_and_the_chat(
    start_server: StartServer, short_bytes: bytes
) -> None:
    engine = FakeEngine(
        text=(
            "The lobby is empty at first. A person walks in at [00:02] and leaves at [00:04]. "
            "The door shuts behind them at [00:04]!"
        ),
        chat_text="They come in at [00:02], alone.",
    )
    server = await start_server(engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        events = await events_of(stub, job_id)
        assert kinds(events)[-1] == "complete", events[-1]
        result = events[-1].complete.result
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job

        # The seed's 3 frames of the 5 s clip (30 fps) are at frames 25, 75 and 125.
        times = [f.time_s for f in result.frames]
        assert times == pytest.approx([25 / 30, 75 / 30, 125 / 30])
        # No detector and no scene scan: each event is a sentence of the model's that cites
        # times, resting on the frames nearest those times.
        walk, door = result.timeline
        assert walk.description == "A person walks in at [00:02] and leaves at [00:04]."
        assert (walk.start_s, walk.end_s) == (2.0, 4.0)
        assert list(walk.frame_times_s) == [times[1], times[2]]
        assert door.description == "The door shuts behind them at [00:04]!"
        assert (door.start_s, door.end_s) == (4.0, 4.0)
        assert list(door.frame_times_s) == [times[2]]
        assert job.result.timeline == result.timeline

        responses = [
            r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="Who came in?"))
        ]
        *deltas, final = responses
        assert deltas
        assert not any(r.cited_times_s for r in deltas)
        assert final.done
        assert final.text.split() == engine.chat_text.split()
        assert list(final.cited_times_s) == [2.0]
    (turn,) = await server.store.chat_turns(job_id)
    assert turn.cited_times_s == (2.0,)
    assert turn.answer == final.text
