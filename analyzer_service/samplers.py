"""Samplers: the sampling policies of ``sampling`` run against a video.

A ``Sampler`` decodes the frames its policy picks (and has the detector look at them) for one
run; ``sampler_for`` picks the one a job's options ask for. ``sampling`` holds the arithmetic,
``stages.Run`` the decoding and detection.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Protocol

from analyzer_service import sampling
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.stages import Run, progress
from vigil.analyzer.v1 import analyzer_service_pb2 as pb


@dataclasses.dataclass
class Sampled:
    """Sampled frames in time order, their files, and where each scene change began."""

    frames: list[pb.SampledFrame]
    files: list[pathlib.Path]
    # Time of a scene-change frame -> time of the moment looked at before it.
    scene_starts: dict[float, float]


class Sampler(Protocol):
    @property
    def planned(self) -> int:
        """The frames it aims for (the long-video notice tells them before sampling)."""
        ...

    async def sample(self, run: Run) -> Sampled: ...


class FixedSampler:
    """The seed and uniform policies: decode the planned frames, then detect on them."""

    def __init__(self, plan: sampling.Plan) -> None:
        self.plan = plan

    @property
    def planned(self) -> int:
        return len(self.plan.targets)

    async def sample(self, run: Run) -> Sampled:
        decoded = await run.decode(self.plan.targets, prefix="frame")
        files = [pathlib.Path(f.path) for f in decoded]
        detections = await run.detect_pass(files)
        frames = [
            pb.SampledFrame(
                time_s=f.time_s, index=f.index, reason=self.plan.reason, detections=found or []
            )
            for f, found in zip(decoded, detections, strict=True)
        ]
        await run.announce_found(frames)
        return Sampled(frames=frames, files=files, scene_starts={})


class AdaptiveSampler:
    """Scan a grid of candidates for scene changes and weapons, keep the budget's best, and
    decode more frames around each run of weapon hits."""

    def __init__(self, settings: AnalyzerSettings, budget: int) -> None:
        self.settings = settings
        self.budget = budget

    @property
    def planned(self) -> int:
        return self.budget

    async def sample(self, run: Run) -> Sampled:
        settings, budget = self.settings, self.budget
        video = run.job.video
        grid = sampling.uniform_targets(
            video.duration_s, video.fps, video.frame_count, budget * settings.candidate_factor
        )
        # Candidates need not be exact: any frame within half a grid step before its target will
        # do (its own time is what counts), which spares decoding up to a keyframe interval each.
        scanned = await run.decode(
            grid,
            prefix="scan",
            thumbnail_side=settings.thumbnail_side,
            slack_s=0.5 * video.duration_s / max(1, len(grid)),
        )
        changes = sum(1 for f in scanned if f.change >= settings.scene_change_threshold)
        await run.emit(
            progress(
                pb.STAGE_EXTRACTING_FRAMES,
                35,
                f"Scanned {len(scanned)} moments for scene changes ({changes} found)",
            )
        )
        scanned_files = [pathlib.Path(f.path) for f in scanned]
        found = await run.detect_pass(scanned_files)
        candidates = [
            sampling.Candidate(
                time_s=f.time_s, change=f.change, weapon=any(d.is_weapon for d in dets or [])
            )
            for f, dets in zip(scanned, found, strict=True)
        ]

        # Weapons first: the edges of each run of hits, then frames around them, within half
        # the budget; the rest of the budget goes to coverage and scene changes.
        runs = sampling.weapon_runs(candidates)
        share = max(1, budget // 2) if runs else 0
        edges = sampling.hit_positions(runs, share)
        dense = sampling.dense_targets(
            candidates,
            runs,
            per_run=settings.dense_frames_per_hit,
            limit=share - len(edges),
            window_s=settings.dense_window_s,
            duration_s=video.duration_s,
            fps=video.fps,
            frame_count=video.frame_count,
        )
        choices = sampling.select(
            candidates,
            budget - len(edges) - len(dense),
            threshold=settings.scene_change_threshold,
            reserved=edges,
        )
        frames: list[pb.SampledFrame] = []
        files: list[pathlib.Path] = []
        scene_starts: dict[float, float] = {}
        kept = {choice.position for choice in choices}
        for choice in choices:
            f = scanned[choice.position]
            scene_change = f.change >= settings.scene_change_threshold
            frames.append(
                pb.SampledFrame(
                    time_s=f.time_s,
                    index=f.index,
                    reason=choice.reason,
                    scene_change=scene_change,
                    detections=found[choice.position] or [],
                )
            )
            files.append(scanned_files[choice.position])
            if scene_change and choice.position > 0:
                scene_starts[f.time_s] = scanned[choice.position - 1].time_s
        # Only the kept candidates stay on disk.
        for position, path in enumerate(scanned_files):
            if position not in kept:
                path.unlink(missing_ok=True)

        dense_frames: list[pb.SampledFrame] = []
        if dense:
            extra = await run.decode(dense, prefix="dense")
            extra_files = [pathlib.Path(f.path) for f in extra]
            extra_found = await run.detect_pass(extra_files, announce=False)
            seen = {frame.index for frame in frames}
            for f, path, dets in zip(extra, extra_files, extra_found, strict=True):
                if f.index in seen:  # two targets landed on one frame
                    path.unlink(missing_ok=True)
                    continue
                seen.add(f.index)
                dense_frames.append(
                    pb.SampledFrame(
                        time_s=f.time_s,
                        index=f.index,
                        reason=sampling.REASON_DETECTION,
                        detections=dets or [],
                    )
                )
                files.append(path)
                frames.append(dense_frames[-1])
        await run.announce_found(frames, dense_frames)
        order = sorted(range(len(frames)), key=lambda n: frames[n].time_s)
        return Sampled(
            frames=[frames[n] for n in order],
            files=[files[n] for n in order],
            scene_starts=scene_starts,
        )


def sampler_for(
    options: pb.AnalysisOptions, video: pb.Video, settings: AnalyzerSettings, *, budget: int
) -> Sampler:
    """The sampler of the job's policy; ``budget`` is the adaptive policy's frame budget."""
    policy = sampling.resolve_policy(options, settings.default_sampling_policy)
    if policy == pb.SAMPLING_POLICY_ADAPTIVE:
        return AdaptiveSampler(settings, budget)
    plan = sampling.plan(
        options,
        video,
        default_policy=settings.default_sampling_policy,
        uniform_frames=settings.uniform_frames,
    )
    return FixedSampler(plan)
