"""Which moments of a video the analysis looks at.

Three policies:

- ``seed``: the prototype's rule, 3 frames for a video under an hour and 8 from an hour.
- ``uniform``: ``max_frames`` (or ``uniform_frames``) evenly spaced frames.
- ``adaptive`` (the default): a frame budget from the model's context (``frame_budget``); a grid
  of ``candidate_factor`` x budget candidate moments is decoded by seeking and scored for scene
  changes on small thumbnails; the detector looks at every candidate; ``select`` keeps the
  budget's worth, weapon hits and scene changes first, coverage of the whole video always; and
  ``dense_targets`` adds frames around each run of weapon hits, where its event starts and ends.

Everything here is pure arithmetic on times and scores; decoding happens in ``media`` (in child
processes) and detection in ``detection``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import InvalidInput

# The prototype's rule: videos of an hour or more are "long" and get more frames.
LONG_VIDEO_S = 3600.0
VERY_LONG_VIDEO_S = 7200.0
SEED_SHORT_FRAMES = 3
SEED_LONG_FRAMES = 8

REASON_SEED = "seed"
REASON_UNIFORM = "uniform"
REASON_SCENE_CHANGE = "scene_change"
REASON_DETECTION = "detection"

_POLICIES = {
    "adaptive": pb.SAMPLING_POLICY_ADAPTIVE,
    "seed": pb.SAMPLING_POLICY_SEED,
    "uniform": pb.SAMPLING_POLICY_UNIFORM,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Target times in seconds from the start, in order, and why they were chosen."""

    targets: list[float]
    reason: str
    notes: list[str]


def check_options(options: pb.AnalysisOptions, settings: AnalyzerSettings) -> None:
    if options.max_frames > settings.max_frames_limit:
        raise InvalidInput(
            f"max_frames {options.max_frames} is over the limit of {settings.max_frames_limit}"
        )


def resolve_policy(options: pb.AnalysisOptions, default_policy: str) -> pb.SamplingPolicy.ValueType:
    if options.sampling_policy == pb.SAMPLING_POLICY_UNSPECIFIED:
        return _POLICIES[default_policy]
    return options.sampling_policy


def seed_frame_count(duration_s: float) -> int:
    return SEED_LONG_FRAMES if duration_s >= LONG_VIDEO_S else SEED_SHORT_FRAMES


def frame_budget(
    settings: AnalyzerSettings,
    *,
    max_frames: int,
    model_configured: bool,
    max_model_len: int | None = None,
    tokens_per_image: int | None = None,
    max_images: int | None = None,
) -> int:
    """Frames the adaptive policy may keep: what the model's context holds, within the limits.

    ``max_images``, the most images one prompt may carry, caps it when the model is configured.
    """
    if model_configured:
        context = max_model_len or settings.max_model_len
        per_image = tokens_per_image or settings.tokens_per_image
        free = context - settings.prompt_reserve_tokens - settings.max_tokens
        budget = free // per_image
        if max_images:
            budget = min(budget, max_images)
    else:
        budget = settings.no_model_frame_budget
    budget = min(budget, settings.max_frames_limit)
    if max_frames:
        budget = min(budget, max_frames)
    return max(1, budget)


def uniform_targets(duration_s: float, fps: float, frame_count: int, count: int) -> list[float]:
    """``count`` frame start times at the centres of equal slices of the video.

    Centres rather than edges: the first frame is often black and the last may not decode.
    """
    count = max(1, min(count, frame_count))
    step = duration_s / count
    indices = sorted(
        {min(frame_count - 1, math.floor((i + 0.5) * step * fps)) for i in range(count)}
    )
    return [index / fps for index in indices]


def plan(
    options: pb.AnalysisOptions,
    video: pb.Video,
    *,
    default_policy: str,
    uniform_frames: int,
) -> Plan:
    """The fixed plan of the seed and uniform policies (adaptive plans as it goes)."""
    policy = resolve_policy(options, default_policy)
    if policy == pb.SAMPLING_POLICY_SEED:
        count = seed_frame_count(video.duration_s)
        if options.max_frames:
            count = min(count, options.max_frames)
        reason = REASON_SEED
    else:
        count = options.max_frames or uniform_frames
        reason = REASON_UNIFORM
    targets = uniform_targets(video.duration_s, video.fps, video.frame_count, count)
    return Plan(targets=targets, reason=reason, notes=[])


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One scanned moment: its time, its scene-change score, and whether a weapon is in it."""

    time_s: float
    change: float
    weapon: bool = False


@dataclasses.dataclass(frozen=True)
class Choice:
    """A candidate kept, by its position in the candidate list, and why."""

    position: int
    reason: str


def weapon_runs(candidates: Sequence[Candidate]) -> list[tuple[int, int]]:
    """(first, last) positions of each run of consecutive candidates with a weapon."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for position, candidate in enumerate(candidates):
        if candidate.weapon and start is None:
            start = position
        elif not candidate.weapon and start is not None:
            runs.append((start, position - 1))
            start = None
    if start is not None:
        runs.append((start, len(candidates) - 1))
    return runs


def hit_positions(runs: Sequence[tuple[int, int]], limit: int) -> list[int]:
    """Weapon candidates to keep, at most ``limit``: the first and last of each run, where its
    event starts and ends (the middles may still be kept for coverage)."""
    kept: list[int] = []
    for first, last in runs:
        for position in (first, last):
            if position not in kept and len(kept) < limit:
                kept.append(position)
    return sorted(kept)


def select(
    candidates: Sequence[Candidate], budget: int, *, threshold: float, reserved: Sequence[int] = ()
) -> list[Choice]:
    """Keep ``budget`` candidates besides the ``reserved`` positions (kept for detections).

    Half the slots go to coverage: the video is cut into that many equal stretches and each keeps
    its most changed candidate. The other half go to the strongest scene changes left, then (when
    no change reaches ``threshold``) to the candidates farthest from everything kept.
    """
    reserved_set = set(reserved)
    chosen: dict[int, str] = dict.fromkeys(reserved, REASON_DETECTION)
    free = [p for p in range(len(candidates)) if p not in reserved_set]
    if budget <= 0 or not free:
        return [Choice(p, r) for p, r in sorted(chosen.items())]
    budget = min(budget, len(free))

    def reason(position: int) -> str:
        if candidates[position].change >= threshold:
            return REASON_SCENE_CHANGE
        return REASON_UNIFORM

    # Coverage: one per stretch of the video.
    stretches = math.ceil(budget / 2)
    for s in range(stretches):
        members = free[
            math.floor(s * len(free) / stretches) : math.floor((s + 1) * len(free) / stretches)
        ]
        if not members:
            continue
        centre = members[len(members) // 2]
        best = max(members, key=lambda p: (candidates[p].change, -abs(p - centre)))
        chosen[best] = reason(best)
    # The rest: scene changes by strength, then the largest gaps.
    added = len(chosen) - len(reserved_set)
    while added < budget:
        left = [p for p in free if p not in chosen]
        if not left:
            break
        kept_times = [candidates[p].time_s for p in chosen]
        merits = {p: _merit(candidates[p], kept_times, threshold) for p in left}
        best = max(left, key=merits.__getitem__)
        chosen[best] = reason(best)
        added += 1
    return [Choice(p, r) for p, r in sorted(chosen.items())]


def _merit(
    candidate: Candidate, kept_times: Sequence[float], threshold: float
) -> tuple[bool, float, float]:
    """Scene changes by strength first, then distance from everything kept."""
    change = candidate.change
    gap = min((abs(candidate.time_s - t) for t in kept_times), default=math.inf)
    return (change >= threshold, change if change >= threshold else 0.0, gap)


def dense_targets(
    candidates: Sequence[Candidate],
    runs: Sequence[tuple[int, int]],
    *,
    per_run: int,
    limit: int,
    window_s: float,
    duration_s: float,
    fps: float,
    frame_count: int,
) -> list[float]:
    """Frame times between each weapon run's edges and the candidates beside them.

    The detector saw no weapon in the candidate before a run and saw one in its first candidate:
    the weapon appeared in between, so that is where extra frames tell when. Likewise after the
    run's last candidate. A side with no neighbour (the video's start or end) uses the same
    spacing. At most ``per_run`` frames a run and ``limit`` in all; nearest the edges first.
    """
    if per_run <= 0 or limit <= 0 or not runs:
        return []
    spacing = duration_s / max(1, len(candidates))
    per_side = math.ceil(per_run / 2)
    taken = {round(c.time_s * fps) for c in candidates}
    wanted: list[list[float]] = []
    for first, last in runs:
        times: list[tuple[int, float]] = []
        sides = (
            (candidates[first].time_s, -1, first - 1),
            (candidates[last].time_s, +1, last + 1),
        )
        for edge, direction, neighbour in sides:
            if 0 <= neighbour < len(candidates):
                gap = abs(candidates[neighbour].time_s - edge)
            else:
                gap = spacing
            gap = min(gap, window_s)
            for step in range(1, per_side + 1):
                # Nearest the edge first: step 1 of per_side is the closest point.
                times.append((step, edge + direction * gap * step / (per_side + 1)))
        times.sort(key=lambda item: item[0])
        wanted.append([t for _, t in times][:per_run])
    # Round-robin over runs, so a long list of runs shares the limit fairly.
    result: list[float] = []
    for rank in range(max(len(run_times) for run_times in wanted)):
        for run_times in wanted:
            if rank >= len(run_times) or len(result) >= limit:
                continue
            index = math.floor(run_times[rank] * fps)
            if not 0 <= index < frame_count or index in taken:
                continue
            taken.add(index)
            result.append(index / fps)
    return sorted(result)
