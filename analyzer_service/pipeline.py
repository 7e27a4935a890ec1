"""The stages of one analysis: probe, sample (and detect), ask the model, build the result.

The pipeline only produces events and a result; the job manager owns state, storage and
cancellation.

Events of a job, in order (percent, stage, message):

- 10 INITIALIZING "Starting video analysis..." (then ``long_video_detected`` from an hour)
- 25 EXTRACTING_FRAMES "Extracting frames from video..."
- 35 EXTRACTING_FRAMES "Scanned N moments for scene changes (K found)" (adaptive policy only)
- 40 DETECTING "Looking for weapons and people in N frames..." (unless detection is off)
- 45 DETECTING what the detector found, or that it could not be reached (likewise)
- 50 EXTRACTING_FRAMES "Extracted N frames (M min)"
- 75 INFERENCE "<model> analyzing N frames..." (with a text-only model: "<model> reading the
  timeline of N frames...") and a ``thinking`` event; without a model "No language model
  configured; building the timeline of detections and scene changes" and no ``thinking`` event
- 100 COMPLETE "Analysis complete in X.Xs!", then the terminal ``complete`` event
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

from analyzer_service import media, prompting, sampling, timeline
from analyzer_service.detection import SOURCE_PREFIX, DetectorClient, DetectorUnavailable
from analyzer_service.engine import (
    HOW_TO_CONFIGURE,
    Engine,
    EngineMonitor,
    GenerateRequest,
)
from analyzer_service.isolation import MediaWorkers, RemoteError, WorkerCrashed, WorkerTimeout
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.prompting import clock
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import Event
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2
from vigil.core.errors import VigilError

Emit = Callable[[Event], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")

NO_MODEL_NOTE = (
    "No language model was configured, so there is no summary: the timeline comes from the "
    f"detector and from scene changes only. To configure one, {HOW_TO_CONFIGURE}."
)
NO_MODEL_PROGRESS = (
    "No language model configured; building the timeline of detections and scene changes"
)


def progress(stage: pb.Stage.ValueType, percent: float, message: str) -> Event:
    return Event(progress=pb.AnalysisProgress(stage=stage, percent=percent, message=message))


def long_video_notice(duration_s: float, frame_count: int) -> str:
    minutes = duration_s / 60
    if duration_s >= sampling.VERY_LONG_VIDEO_S:
        return (
            f"Long video detected ({minutes:.1f} min): a 120+ minute video is sampled sparsely, "
            f"{frame_count} frames spread strategically over its length."
        )
    return (
        f"Long video detected ({minutes:.1f} min): sampling {frame_count} frames spread over "
        "its length."
    )


def _int_attribute(engine: Engine | None, name: str) -> int | None:
    value = getattr(engine, name, None)
    return value if isinstance(value, int) and value > 0 else None


@dataclasses.dataclass
class _Run:
    """What one run of the pipeline accumulates on the way."""

    job: pb.Job
    emit: Emit
    timings: pb.StageTimings
    notes: list[str]
    detect: bool
    frames_dir: pathlib.Path


@dataclasses.dataclass
class _Sampled:
    frames: list[pb.SampledFrame]
    files: list[pathlib.Path]
    # Time of a scene-change frame -> time of the moment looked at before it.
    scene_starts: dict[float, float]


# Next to the frames: what chat needs from the sampling stage (frames with their detections and
# the timeline) before the job's result exists.
SAMPLED_FILE = "sampled.pb"
MANIFEST_FILE = "frames.json"


class Pipeline:
    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        workers: MediaWorkers,
        engine: Engine | None,
        detector: DetectorClient | None = None,
        monitor: EngineMonitor | None = None,
        metrics: AnalyzerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or AnalyzerMetrics()
        self.workers = workers
        self.engine = engine
        self.detector = detector
        self.monitor = monitor

    def budget(self, options: pb.AnalysisOptions) -> int:
        return sampling.frame_budget(
            self.settings,
            max_frames=options.max_frames,
            model_configured=self.engine is not None,
            max_model_len=_int_attribute(self.engine, "max_model_len"),
            tokens_per_image=_int_attribute(self.engine, "tokens_per_image"),
            max_images=self.max_images() if self.accepts_images() else None,
        )

    def max_images(self) -> int:
        """The most frames one prompt may show: the engine's limit when it has one."""
        return _int_attribute(self.engine, "max_images") or self.settings.max_images

    def accepts_images(self) -> bool:
        """Whether prompts carry frames: not for a text-only model (setting or engine says so)."""
        return (
            self.settings.model_accepts_images
            and getattr(self.engine, "accepts_images", None) is not False
        )

    @contextlib.asynccontextmanager
    async def engine_work(self) -> AsyncIterator[None]:
        """Engine work fails fast (UNAVAILABLE) while, or as soon as, the engine is unhealthy."""
        if self.monitor is None:
            yield
            return
        async with self.monitor.watch():
            yield

    async def run(self, job: pb.Job, emit: Emit) -> pb.AnalysisResult:
        """Emit the job's progress and return its result; raise VigilError when it fails."""
        started = time.monotonic()
        video = job.video
        run = _Run(
            job=job,
            emit=emit,
            timings=pb.StageTimings(),
            notes=[],
            detect=(
                self.settings.detection_pass
                and not job.options.skip_detection
                and self.detector is not None
            ),
            frames_dir=self.frames_dir(job),
        )
        await emit(progress(pb.STAGE_INITIALIZING, 10, "Starting video analysis..."))
        probe_started = time.monotonic()
        await self._probe(job)
        run.timings.probe_s = time.monotonic() - probe_started

        policy = sampling.resolve_policy(job.options, self.settings.default_sampling_policy)
        plan: sampling.Plan | None = None
        if policy == pb.SAMPLING_POLICY_ADAPTIVE:
            budget = self.budget(job.options)
        else:
            plan = sampling.plan(
                job.options,
                video,
                default_policy=self.settings.default_sampling_policy,
                uniform_frames=self.settings.uniform_frames,
            )
            budget = len(plan.targets)
        if video.duration_s >= sampling.LONG_VIDEO_S:
            notice = long_video_notice(video.duration_s, budget)
            await emit(
                Event(
                    long_video_detected=pb.LongVideoDetected(
                        duration_s=video.duration_s, message=notice
                    )
                )
            )

        await emit(progress(pb.STAGE_EXTRACTING_FRAMES, 25, "Extracting frames from video..."))
        # A resumed job starts from a clean slate.
        shutil.rmtree(run.frames_dir, ignore_errors=True)
        if plan is None:
            sampled = await self._adaptive(run, budget)
        else:
            sampled = await self._fixed(run, plan)
        result = pb.AnalysisResult(
            frames=sampled.frames,
            timeline=timeline.build(sampled.frames, sampled.scene_starts),
        )
        self._write_manifest(run, sampled, result)
        await emit(
            progress(
                pb.STAGE_EXTRACTING_FRAMES,
                50,
                f"Extracted {len(sampled.frames)} frames ({video.duration_s / 60:.1f} min)",
            )
        )

        if self.engine is None:
            run.notes.append(NO_MODEL_NOTE)
            await emit(progress(pb.STAGE_INFERENCE, 75, NO_MODEL_PROGRESS))
        else:
            inference_started = time.monotonic()
            images = self.accepts_images()
            shown = prompting.frames_for_model(
                sampled.frames, sampled.files, limit=self.max_images(), images=images
            )
            model = self.engine.model
            if images:
                count = len(shown.files)
                doing, thinking = f"analyzing {count} frames", f"is reading {count} frames"
                if count < len(sampled.frames):
                    run.notes.append(
                        f"The model saw {count} of the {len(sampled.frames)} sampled frames "
                        f"(it takes at most {self.max_images()} images a prompt)."
                    )
            else:
                count = len(sampled.frames)
                doing = thinking = f"reading the timeline of {count} frames"
                run.notes.append(
                    "The model reads text only: it was given the timeline of detections and "
                    "scene changes, not the frames."
                )
            await emit(progress(pb.STAGE_INFERENCE, 75, f"{model} {doing}..."))
            await emit(
                Event(thinking=pb.ModelThinking(message=f"{model} {thinking}", frame_count=count))
            )
            result.summary = await self._summarise(job, sampled, result.timeline, shown)
            result.model = model
            merged = timeline.merge(
                result.timeline,
                timeline.model_events(
                    result.summary, sampled.frames, duration_s=job.video.duration_s
                ),
            )
            del result.timeline[:]
            result.timeline.extend(merged)
            run.timings.inference_s = time.monotonic() - inference_started
        result.notes.extend(run.notes)
        run.timings.total_s = time.monotonic() - started
        result.timings.CopyFrom(run.timings)
        self.metrics.timings(run.timings, detection=run.detect, model=self.engine is not None)
        await emit(
            progress(pb.STAGE_COMPLETE, 100, f"Analysis complete in {run.timings.total_s:.1f}s!")
        )
        return result

    def frames_dir(self, job: pb.Job) -> pathlib.Path:
        return self.settings.jobs_dir / job.id / "frames"

    # Stages.

    async def _probe(self, job: pb.Job) -> None:
        """Check that the stored video is still there and still decodes (the 10% stage)."""
        path = self.settings.videos_dir / job.video.id
        if not path.exists():
            raise VigilError("the uploaded video is no longer stored", code="VIDEO_MISSING")
        await self._in_child(self.settings.probe_timeout_s, media.probe, str(path))

    async def _fixed(self, run: _Run, plan: sampling.Plan) -> _Sampled:
        """The seed and uniform policies: decode the planned frames, then detect on them."""
        decoded = await self._decode(run, plan.targets, prefix="frame")
        files = [pathlib.Path(f.path) for f in decoded]
        detections = await self._detect_pass(run, files)
        frames = [
            pb.SampledFrame(
                time_s=f.time_s, index=f.index, reason=plan.reason, detections=found or []
            )
            for f, found in zip(decoded, detections, strict=True)
        ]
        if run.detect:
            await run.emit(progress(pb.STAGE_DETECTING, 45, self._found_message(frames, [])))
        return _Sampled(frames=frames, files=files, scene_starts={})

    async def _adaptive(self, run: _Run, budget: int) -> _Sampled:
        settings = self.settings
        video = run.job.video
        grid = sampling.uniform_targets(
            video.duration_s, video.fps, video.frame_count, budget * settings.candidate_factor
        )
        # Candidates need not be exact: any frame within half a grid step before its target will
        # do (its own time is what counts), which spares decoding up to a keyframe interval each.
        scanned = await self._decode(
            run,
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
        found = await self._detect_pass(run, scanned_files)
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
            extra = await self._decode(run, dense, prefix="dense")
            extra_files = [pathlib.Path(f.path) for f in extra]
            extra_found = await self._detect_pass(run, extra_files, announce=False)
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
        if run.detect:
            await run.emit(
                progress(pb.STAGE_DETECTING, 45, self._found_message(frames, dense_frames))
            )
        order = sorted(range(len(frames)), key=lambda n: frames[n].time_s)
        return _Sampled(
            frames=[frames[n] for n in order],
            files=[files[n] for n in order],
            scene_starts=scene_starts,
        )

    def _found_message(
        self, frames: Sequence[pb.SampledFrame], dense: Sequence[pb.SampledFrame]
    ) -> str:
        weapons = sorted({d.class_name for f in frames for d in f.detections if d.is_weapon})
        others = sorted({d.class_name for f in frames for d in f.detections if not d.is_weapon})
        if weapons:
            times = [f.time_s for f in frames if any(d.is_weapon for d in f.detections)]
            message = (
                f"Weapon seen: {', '.join(weapons)} between {clock(min(times))} and "
                f"{clock(max(times))}"
            )
            if dense:
                message += f"; looked at {len(dense)} more frames around it"
            return message
        if others:
            return f"No weapons seen; also seen: {', '.join(others)}"
        return "No weapons seen"

    # Helpers.

    async def _detect_pass(
        self, run: _Run, files: Sequence[pathlib.Path], *, announce: bool = True
    ) -> list[list[common_pb2.Detection] | None]:
        """Detections for each file; all None when detection is off or the detector is away.

        The first failure turns detection off for the rest of the job and leaves a note.
        """
        if not run.detect or self.detector is None or not files:
            return [None] * len(files)
        if announce:
            await run.emit(
                progress(
                    pb.STAGE_DETECTING,
                    40,
                    f"Looking for weapons and people in {len(files)} frames...",
                )
            )
        started = time.monotonic()
        try:
            found = await self.detector.detect(files, source_id=SOURCE_PREFIX + run.job.id)
        except DetectorUnavailable as exc:
            run.detect = False
            run.notes.append(
                f"The detector service could not be used ({exc}); the analysis went on without "
                "object detections, so frames carry none and the timeline has scene changes only."
            )
            await run.emit(
                progress(
                    pb.STAGE_DETECTING, 45, "Detector unavailable; continuing without detections"
                )
            )
            return [None] * len(files)
        finally:
            run.timings.detection_s += time.monotonic() - started
        refused = sum(1 for dets in found if dets is None)
        if refused:
            run.notes.append(f"The detector could not read {refused} of {len(files)} frames.")
        return found

    async def _decode(
        self,
        run: _Run,
        targets: Sequence[float],
        *,
        prefix: str,
        thumbnail_side: int = 0,
        slack_s: float = 0.0,
    ) -> list[media.FrameFile]:
        started = time.monotonic()
        try:
            return await self._in_child(
                self.settings.sampling_timeout_s,
                media.sample_frames,
                str(self.settings.videos_dir / run.job.video.id),
                list(targets),
                str(run.frames_dir),
                max_side=self.settings.frame_max_side,
                jpeg_quality=self.settings.frame_jpeg_quality,
                prefix=prefix,
                thumbnail_side=thumbnail_side,
                slack_s=slack_s,
            )
        finally:
            run.timings.sampling_s += time.monotonic() - started

    async def _in_child(
        self, limit_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            return await self.workers.call(limit_s, fn, *args, **kwargs)
        except RemoteError as exc:
            raise VigilError(
                f"frames could not be read: {exc.message}", code="SAMPLING_FAILED"
            ) from exc
        except WorkerCrashed as exc:
            raise VigilError(
                "the decoder crashed while reading frames", code="DECODER_CRASHED"
            ) from exc
        except WorkerTimeout as exc:
            raise VigilError(
                f"reading the video took longer than {limit_s:g} s", code="DECODER_TIMEOUT"
            ) from exc

    def _write_manifest(self, run: _Run, sampled: _Sampled, result: pb.AnalysisResult) -> None:
        # The manifest lets later work (chat) reuse the frames without decoding again.
        manifest = [
            {
                "time_s": frame.time_s,
                "index": frame.index,
                "file": path.name,
                "reason": frame.reason,
                "scene_change": frame.scene_change,
            }
            for frame, path in zip(sampled.frames, sampled.files, strict=True)
        ]
        run.frames_dir.mkdir(parents=True, exist_ok=True)
        tmp = run.frames_dir / f"{SAMPLED_FILE}.tmp"
        tmp.write_bytes(result.SerializeToString())
        os.replace(tmp, run.frames_dir / SAMPLED_FILE)
        # Written last: its presence says the frames are ready for chat.
        tmp = run.frames_dir / f"{MANIFEST_FILE}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, run.frames_dir / MANIFEST_FILE)

    async def _summarise(
        self,
        job: pb.Job,
        sampled: _Sampled,
        events: Sequence[pb.TimelineEvent],
        shown: prompting.Frames,
    ) -> str:
        assert self.engine is not None
        instructions = job.options.prompt or (
            self.settings.default_prompt if shown.files else prompting.TEXT_ONLY_PROMPT
        )
        facts = prompting.context(job.video, sampled.frames, events, shown=shown)
        request = GenerateRequest(
            request_id=job.id,
            prompt=f"{instructions}\n\n{facts}",
            images=shown.files,
            labels=shown.labels,
            max_tokens=self.settings.max_tokens,
        )
        parts: list[str] = []
        try:
            async with (
                self.engine_work(),
                contextlib.aclosing(
                    self.metrics.deltas(self.engine, request, kind="summary")
                ) as stream,
            ):
                async for delta in stream:
                    parts.append(delta.text)
        except BaseException:
            # Cancelled or failed mid-generation: free the engine's slot for the next job.
            with contextlib.suppress(Exception):
                await self.engine.abort(request.request_id)
            raise
        return "".join(parts)
