"""Which moments of a video the analysis looks at."""

from __future__ import annotations

import dataclasses
import math

from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.errors import InvalidInput

# The prototype's rule: videos of an hour or more are "long" and get more frames.
LONG_VIDEO_S = 3600.0
VERY_LONG_VIDEO_S = 7200.0
SEED_SHORT_FRAMES = 3
SEED_LONG_FRAMES = 8


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


def seed_frame_count(duration_s: float) -> int:
    return SEED_LONG_FRAMES if duration_s >= LONG_VIDEO_S else SEED_SHORT_FRAMES


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
    policy = options.sampling_policy
    notes: list[str] = []
    if policy == pb.SAMPLING_POLICY_UNSPECIFIED:
        policy = pb.SAMPLING_POLICY_SEED if default_policy == "seed" else pb.SAMPLING_POLICY_UNIFORM
    if policy == pb.SAMPLING_POLICY_ADAPTIVE:
        # Adaptive sampling needs the model's context size and the detector; until both are
        # wired in it degrades to uniform, and says so.
        notes.append("Adaptive sampling is not available yet; frames were spread evenly.")
        policy = pb.SAMPLING_POLICY_UNIFORM
    if policy == pb.SAMPLING_POLICY_SEED:
        count = seed_frame_count(video.duration_s)
        if options.max_frames:
            count = min(count, options.max_frames)
        reason = "seed"
    else:
        count = options.max_frames or uniform_frames
        reason = "uniform"
    targets = uniform_targets(video.duration_s, video.fps, video.frame_count, count)
    return Plan(targets=targets, reason=reason, notes=notes)
