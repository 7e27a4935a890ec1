"""Sampling policies: which moments a job looks at."""

from __future__ import annotations

import pytest

from analyzer_service import sampling
from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import InvalidInput


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
    unspecified = pb.AnalysisOptions()
    assert sampling.resolve_policy(unspecified, "adaptive") == pb.SAMPLING_POLICY_ADAPTIVE
    assert AnalyzerSettings().default_sampling_policy == "adaptive"
    seed = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)
    assert sampling.resolve_policy(seed, "adaptive") == pb.SAMPLING_POLICY_SEED


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


def test_the_budget_is_what_the_model_context_holds_within_the_limits() -> None:
    settings = AnalyzerSettings(
        max_model_len=8192, tokens_per_image=256, prompt_reserve_tokens=512, max_tokens=1024
    )
    # (8192 - 512 - 1024) // 256 = 26 frames of 256 tokens.
    assert sampling.frame_budget(settings, max_frames=0, model_configured=True) == 26
    assert sampling.frame_budget(settings, max_frames=10, model_configured=True) == 10
    # An engine's own figures win: a tiny model with 16 tokens an image.
    assert (
        sampling.frame_budget(settings, max_frames=0, model_configured=True, tokens_per_image=16)
        == 64  # 416, capped by max_frames_limit
    )
    assert (
        sampling.frame_budget(settings, max_frames=0, model_configured=True, max_model_len=1600)
        == 1  # (1600 - 1536) // 256 = 0, and at least one frame
    )
    assert sampling.frame_budget(settings, max_frames=0, model_configured=False) == 16
    assert sampling.frame_budget(settings, max_frames=4, model_configured=False) == 4


def candidates(
    changes: list[float], weapons: frozenset[int] = frozenset()
) -> list[sampling.Candidate]:
    return [
        sampling.Candidate(time_s=float(n), change=c, weapon=n in weapons)
        for n, c in enumerate(changes)
    ]


def test_select_keeps_scene_changes_and_covers_the_video() -> None:
    # 40 candidates a second apart, cuts at 13 and 27.
    changes = [0.0] * 40
    changes[13], changes[27] = 0.9, 0.6
    chosen = sampling.select(candidates(changes), 8, threshold=0.3)
    positions = [c.position for c in chosen]
    assert len(chosen) == 8
    assert 13 in positions
    assert 27 in positions
    assert {c.reason for c in chosen if c.position in (13, 27)} == {"scene_change"}
    assert {c.reason for c in chosen if c.position not in (13, 27)} == {"uniform"}
    # Coverage: no stretch of a quarter of the video is left without a frame.
    gaps = [b - a for a, b in zip([-1, *positions], [*positions, 40], strict=True)]
    assert max(gaps) <= 10


def test_select_keeps_reserved_positions_beside_the_budget() -> None:
    chosen = sampling.select(candidates([0.0] * 10), 3, threshold=0.3, reserved=[4])
    assert len(chosen) == 4
    assert sampling.Choice(4, "detection") in chosen
    assert sampling.select(candidates([0.0] * 3), 10, threshold=0.3) == [
        sampling.Choice(p, "uniform") for p in range(3)
    ]


def test_weapon_runs_and_their_edges() -> None:
    found = candidates([0.0] * 12, weapons=frozenset({2, 3, 4, 5, 9}))
    runs = sampling.weapon_runs(found)
    assert runs == [(2, 5), (9, 9)]
    assert sampling.hit_positions(runs, 10) == [2, 5, 9]
    assert sampling.hit_positions(runs, 2) == [2, 5]


def test_dense_targets_fall_between_a_run_and_its_neighbours() -> None:
    # Candidates every second at 10 fps; a weapon from candidate 4 to 6.
    found = candidates([0.0] * 10, weapons=frozenset({4, 5, 6}))
    runs = sampling.weapon_runs(found)
    dense = sampling.dense_targets(
        found,
        runs,
        per_run=4,
        limit=10,
        window_s=10.0,
        duration_s=10.0,
        fps=10.0,
        frame_count=100,
    )
    # Two before the first hit (between 3 s and 4 s), two after the last (between 6 s and 7 s).
    assert dense == pytest.approx([3.3, 3.6, 6.3, 6.6])
    # The limit takes the points nearest the edges first.
    nearest = sampling.dense_targets(
        found,
        runs,
        per_run=4,
        limit=2,
        window_s=10.0,
        duration_s=10.0,
        fps=10.0,
        frame_count=100,
    )
    assert nearest == pytest.approx([3.6, 6.3])
    # The window bounds how far from the hit they go.
    narrow = sampling.dense_targets(
        found,
        runs,
        per_run=2,
        limit=10,
        window_s=0.3,
        duration_s=10.0,
        fps=10.0,
        frame_count=100,
    )
    assert narrow == pytest.approx([3.8, 6.1])


def test_max_frames_over_the_limit_is_refused() -> None:
    settings = AnalyzerSettings(max_frames_limit=10)
    sampling.check_options(pb.AnalysisOptions(max_frames=10), settings)
    with pytest.raises(InvalidInput, match="max_frames 11"):
        sampling.check_options(pb.AnalysisOptions(max_frames=11), settings)
