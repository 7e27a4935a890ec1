"""Times cited as [mm:ss] in what the model says, and what the prompts show of a video."""

from __future__ import annotations

import pathlib

from analyzer_service import prompting, timeline
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
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
