"""Sampling policies: which moments a job looks at."""

from __future__ import annotations

import pytest

from analyzer_service import sampling
from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.errors import InvalidInput


def video(duration_s: float, fps: float = 30.0) -> pb.Video:
    return pb.Video(duration_s=duration_s, fps=fps, frame_count=round(duration_s * fps))


def plan(options: pb.AnalysisOptions, v: pb.Video, default: str = "seed") -> sampling.Plan:
    return sampling.plan(options, v, default_policy=default, uniform_frames=16)


@pytest.mark.parametrize(
    ("duration_s", "frames"), [(5.0, 3), (3599.0, 3), (3600.0, 8), (7300.0, 8)]
)
def test_seed_policy_takes_3_frames_under_an_hour_and_8_from_an_hour(
    duration_s: float, frames: int
) -> None:
    result = plan(pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED), video(duration_s))
    assert len(result.targets) == frames
    assert result.reason == "seed"


def test_unspecified_policy_uses_the_configured_default() -> None:
    assert len(plan(pb.AnalysisOptions(), video(5.0)).targets) == 3
    assert len(plan(pb.AnalysisOptions(), video(5.0), default="uniform").targets) == 16


def test_uniform_targets_are_frame_starts_at_slice_centres() -> None:
    targets = sampling.uniform_targets(10.0, 10.0, 100, 4)
    assert targets == [1.2, 3.7, 6.2, 8.7]
    assert all(0 <= t < 10.0 for t in targets)


def test_uniform_never_asks_for_more_frames_than_exist() -> None:
    assert sampling.uniform_targets(0.5, 10.0, 5, 16) == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_max_frames_caps_uniform_and_seed() -> None:
    uniform = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_UNIFORM, max_frames=5)
    assert len(plan(uniform, video(60.0)).targets) == 5
    seed = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED, max_frames=2)
    assert len(plan(seed, video(4000.0)).targets) == 2


def test_adaptive_falls_back_to_uniform_and_says_so() -> None:
    result = plan(pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_ADAPTIVE), video(60.0))
    assert result.reason == "uniform"
    assert len(result.targets) == 16
    assert len(result.notes) == 1
    assert "Adaptive" in result.notes[0]


def test_max_frames_over_the_limit_is_refused() -> None:
    settings = AnalyzerSettings(max_frames_limit=10)
    sampling.check_options(pb.AnalysisOptions(max_frames=10), settings)
    with pytest.raises(InvalidInput, match="max_frames 11"):
        sampling.check_options(pb.AnalysisOptions(max_frames=11), settings)
