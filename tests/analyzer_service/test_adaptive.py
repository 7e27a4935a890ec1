"""Adaptive sampling end to end: scene changes, the detector's Detect stream, dense sampling
around weapons, the timeline, and a sampling cost that does not grow with the video's length."""

from __future__ import annotations

import asyncio
import pathlib
import re
from fractions import Fraction

import pytest

from analyzer_service import media, sampling, timeline
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from tests.analyzer_service.helpers import (
    StartServer,
    connect,
    events_of,
    kinds,
    steps,
    upload,
    write_h264,
    write_scenes,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.common.v1 import common_pb2

BLACK, RED, GREEN, BLUE = (0, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 0)


async def analyse(
    start_server: StartServer,
    settings: AnalyzerSettings,
    video: pathlib.Path,
    options: pb.AnalysisOptions | None = None,
) -> list[pb.StreamAnalysisEventsResponse]:
    server = await start_server(settings)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        data = await asyncio.to_thread(video.read_bytes)
        job = (await upload(stub, data, options=options)).job
        return await events_of(stub, job.id)


async def test_scene_changes_are_found_and_every_scene_is_sampled(
    start_server: StartServer, settings: AnalyzerSettings, tmp_path: pathlib.Path
) -> None:
    video = tmp_path / "scenes.mp4"
    write_scenes(video, [(3.0, RED), (3.0, GREEN), (3.0, BLUE)], fps=10)
    options = pb.AnalysisOptions(max_frames=8)
    events = await analyse(
        start_server, settings.model_copy(update={"detection_pass": False}), video, options
    )
    assert [percent for _, percent, _ in steps(events)] == [10, 25, 35, 50, 75, 100]
    assert steps(events)[2][2] == "Scanned 32 moments for scene changes (2 found)"
    result = events[-1].complete.result
    frames = result.frames
    # Budget: 8 frames, from a grid of 4 x 8 candidates 9 / 32 s apart.
    assert len(frames) == 8
    spacing = 9.0 / 32
    for start, end in ((0.0, 3.0), (3.0, 6.0), (6.0, 9.0)):
        assert any(start <= f.time_s < end for f in frames), (start, end)
    flagged = [f for f in frames if f.scene_change]
    assert len(flagged) == 2
    for frame, cut in zip(flagged, (3.0, 6.0), strict=True):
        assert frame.reason == "scene_change"
        assert cut <= frame.time_s <= cut + spacing
    assert all(f.reason == "uniform" for f in frames if not f.scene_change)
    cuts = [e for e in result.timeline if e.description == timeline.SCENE_CHANGE]
    assert len(cuts) == 2
    for event, cut in zip(cuts, (3.0, 6.0), strict=True):
        # The cut lies between the moment looked at before it and the first frame after it.
        assert event.start_s < cut <= event.end_s
        assert event.end_s - event.start_s <= spacing + 0.1
        assert list(event.frame_times_s) == [event.end_s]
    assert result.timings.detection_s == 0
    assert len(result.notes) == 1  # no model; detection was switched off


def test_sampling_cost_does_not_grow_with_the_length_of_the_video(
    tmp_path: pathlib.Path,
) -> None:
    # 10 and 65 minutes at 2 fps, a keyframe every 12 frames: the same 64 candidates cost the
    # same few decoded frames each, however long the video.
    gop = 12
    exact: dict[int, int] = {}
    for minutes in (10, 65):
        path = tmp_path / f"{minutes}.mp4"
        frame_count = minutes * 60 * 2
        write_h264(path, frames=frame_count, rate=Fraction(2), width=32, height=32, gop=gop)
        targets = sampling.uniform_targets(minutes * 60.0, 2.0, frame_count, 64)
        step = minutes * 60.0 / 64
        runs = {
            slack_s: media.sample_frames(
                str(path),
                targets,
                str(tmp_path / f"{minutes}-{slack_s}"),
                max_side=32,
                jpeg_quality=80,
                thumbnail_side=16,
                slack_s=slack_s,
            )
            for slack_s in (0.0, step / 2)
        }
        frames = runs[0.0]
        assert len(frames) == 64
        assert all(f.decoded <= gop + 4 for f in frames)
        exact[minutes] = sum(f.decoded for f in frames)
        # The adaptive scan lets the keyframe reached stand for a candidate within half a grid
        # step before it (at its own time): never more work than exact, and at 65 minutes,
        # where a step (61 s) is ten keyframe intervals, one decoded frame a candidate.
        scanned = runs[step / 2]
        assert all(f.target_s - step / 2 <= f.time_s <= f.target_s for f in scanned)
        assert len({f.index for f in scanned}) == 64
        assert all(s.decoded <= f.decoded for s, f in zip(scanned, frames, strict=True))
        if minutes == 65:
            assert [f.decoded for f in scanned] == [1] * 64
    assert exact[65] <= 64 * (gop + 4) < 7800 // 4
    assert exact[65] <= 2 * exact[10]


async def test_weapon_hits_get_dense_frames_and_a_timeline_event(
    start_server: StartServer,
    settings: AnalyzerSettings,
    onnx_detector: DetectorServer,
    tmp_path: pathlib.Path,
) -> None:
    video = tmp_path / "knife.mp4"
    # A knife (red) from 4 s to 6 s, a person (green) from 8 s to 10 s, nothing elsewhere.
    write_scenes(
        video, [(4.0, BLACK), (2.0, RED), (2.0, BLACK), (2.0, GREEN), (2.0, BLACK)], fps=10
    )
    custom = settings.model_copy(
        update={
            "detector_address": f"127.0.0.1:{onnx_detector.port}",
            "candidate_factor": 2,
            "dense_frames_per_hit": 6,
        }
    )
    events = await analyse(start_server, custom, video, pb.AnalysisOptions(max_frames=16))
    assert kinds(events)[-1] == "complete"
    progress = steps(events)
    assert [percent for _, percent, _ in progress] == [10, 25, 35, 40, 45, 50, 75, 100]
    assert progress[3] == (pb.STAGE_DETECTING, 40, "Looking for weapons and people in 32 frames...")
    found = re.fullmatch(
        r"Weapon seen: knife between \[00:04\] and \[00:05\]; "
        r"looked at (\d) more frames around it",
        progress[4][2],
    )
    assert found is not None, progress[4][2]
    # Up to 6: two dense targets may land on one frame (they are 0.09 s apart at 10 fps).
    looked = int(found.group(1))
    assert 4 <= looked <= 6
    result = events[-1].complete.result
    frames = result.frames
    assert len(frames) <= 16
    assert [f.time_s for f in frames] == sorted(f.time_s for f in frames)

    # Every sampled frame went through the detector: red ones carry the knife.
    for frame in frames:
        names = [d.class_name for d in frame.detections]
        red = 4.0 <= frame.time_s < 6.0
        green = 8.0 <= frame.time_s < 10.0
        assert names == (["knife"] if red else ["person"] if green else []), frame
        assert all(d.is_weapon == (d.class_name == "knife") for d in frame.detections)
        assert all(d.model == "onnx:colours" for d in frame.detections)

    # Dense frames: between the candidates around the edges of the knife, off the grid.
    spacing = 12.0 / 32
    dense = [f for f in frames if f.reason == "detection"]
    assert len(dense) == looked + 2  # the dense frames and the first and last hits
    for frame in dense:
        assert min(abs(frame.time_s - 4.0), abs(frame.time_s - 6.0)) <= spacing + 0.1
    grid = {round(t * 10) for t in sampling.uniform_targets(12.0, 10.0, 120, 32)}
    assert len([f for f in dense if f.index not in grid]) == looked
    # Without them the knife would start at the first red candidate, 4.3 s.
    assert min(f.time_s for f in frames if f.index in grid and f.time_s >= 4.0) == 4.3
    assert not [f for f in dense if f.time_s >= 7.0]  # nothing dense around the person

    # The knife's event starts and ends within a frame or so of the truth thanks to them.
    (knife,) = [e for e in result.timeline if e.description.startswith("knife")]
    assert knife.description.startswith("knife seen (weapon, confidence ")
    assert 4.0 <= knife.start_s <= 4.0 + 0.15
    assert 6.0 - 0.1 - 0.15 <= knife.end_s < 6.0
    red_times = [f.time_s for f in frames if 4.0 <= f.time_s < 6.0]
    assert list(knife.frame_times_s) == red_times
    assert len(knife.detections) == len(red_times)
    assert all(d.class_name == "knife" for d in knife.detections)
    (person,) = [e for e in result.timeline if e.description.startswith("person")]
    assert person.description.startswith("person seen (confidence ")
    assert 8.0 <= person.start_s <= person.end_s < 10.0
    assert result.timings.detection_s > 0
    assert len(result.notes) == 1  # only the no-model note: the detector was there


def test_timeline_groups_consecutive_frames_per_class() -> None:
    def knife(confidence: float) -> common_pb2.Detection:
        return common_pb2.Detection(class_name="knife", confidence=confidence, is_weapon=True)

    person = common_pb2.Detection(class_name="person", confidence=0.7)
    frames = [
        pb.SampledFrame(time_s=1.0),
        pb.SampledFrame(time_s=2.0, detections=[knife(0.5), person]),
        pb.SampledFrame(time_s=3.0, detections=[knife(0.82), knife(0.4)]),
        pb.SampledFrame(time_s=4.0, scene_change=True),
        pb.SampledFrame(time_s=5.0, detections=[knife(0.6)]),
    ]
    events = timeline.build(list(reversed(frames)), {4.0: 3.5})
    summary = [(e.start_s, e.end_s, e.description, list(e.frame_times_s)) for e in events]
    assert summary == [
        (2.0, 2.0, "person seen (confidence 0.70)", [2.0]),
        (2.0, 3.0, "knife seen (weapon, confidence 0.82)", [2.0, 3.0]),
        (3.5, 4.0, "scene change", [4.0]),
        (5.0, 5.0, "knife seen (weapon, confidence 0.60)", [5.0]),
    ]
    assert [d.confidence for d in events[1].detections] == pytest.approx([0.5, 0.82])
