"""The stages of one analysis: probe, sample (and detect), ask the model, build the result.

The pipeline only produces events and a result; the job manager owns state, storage and
cancellation. The sampler of the job's policy (``samplers``) picks and decodes the frames, the
frames store (``frames``) keeps them for chat from the 50% event on, and the model
(``generation.Model``) writes the summary.

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
import time
from collections.abc import Sequence

from analyzer_service import prompting, sampling, timeline
from analyzer_service.detection import DetectorClient
from analyzer_service.engine import HOW_TO_CONFIGURE, GenerateRequest, Priority
from analyzer_service.frames import FramesStore
from analyzer_service.generation import Model
from analyzer_service.isolation import MediaWorkers
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.samplers import Sampled, sampler_for
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.stages import Emit, Run, progress
from analyzer_service.store import Event
from vigil.analyzer.v1 import analyzer_service_pb2 as pb

NO_MODEL_NOTE = (
    "No language model was configured, so there is no summary: the timeline comes from the "
    f"detector and from scene changes only. To configure one, {HOW_TO_CONFIGURE}."
)
NO_MODEL_PROGRESS = (
    "No language model configured; building the timeline of detections and scene changes"
)


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


class Pipeline:
    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        workers: MediaWorkers,
        model: Model | None,
        frames: FramesStore,
        detector: DetectorClient | None = None,
        metrics: AnalyzerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or AnalyzerMetrics()
        self.workers = workers
        self.model = model
        self.frames = frames
        self.detector = detector

    def budget(self, options: pb.AnalysisOptions) -> int:
        if self.model is None:
            return sampling.frame_budget(
                self.settings, max_frames=options.max_frames, model_configured=False
            )
        limits = self.model.limits()
        return sampling.frame_budget(
            self.settings,
            max_frames=options.max_frames,
            model_configured=True,
            max_model_len=limits.max_model_len,
            tokens_per_image=limits.tokens_per_image,
            max_images=limits.max_images if limits.accepts_images else None,
        )

    async def run(self, job: pb.Job, emit: Emit) -> pb.AnalysisResult:
        """Emit the job's progress and return its result; raise VigilError when it fails."""
        started = time.monotonic()
        video = job.video
        # A run starting again starts from a clean slate: no chat on the last run's frames.
        self.frames.clear(job.id)
        run = Run(
            job=job,
            emit=emit,
            settings=self.settings,
            workers=self.workers,
            detector=self.detector,
            storage=self.frames.storage,
            frames_dir=self.frames.directory(job.id),
            detect=(
                self.settings.detection_pass
                and not job.options.skip_detection
                and self.detector is not None
            ),
        )
        await emit(progress(pb.STAGE_INITIALIZING, 10, "Starting video analysis..."))
        await run.probe()

        sampler = sampler_for(job.options, video, self.settings, budget=self.budget(job.options))
        if video.duration_s >= sampling.LONG_VIDEO_S:
            notice = long_video_notice(video.duration_s, sampler.planned)
            await emit(
                Event(
                    long_video_detected=pb.LongVideoDetected(
                        duration_s=video.duration_s, message=notice
                    )
                )
            )

        await emit(progress(pb.STAGE_EXTRACTING_FRAMES, 25, "Extracting frames from video..."))
        sampled = await sampler.sample(run)
        result = pb.AnalysisResult(
            frames=sampled.frames,
            timeline=timeline.build(sampled.frames, sampled.scene_starts),
        )
        # Chat may ask about the frames from now on.
        self.frames.save(job.id, result, sampled.files)
        await emit(
            progress(
                pb.STAGE_EXTRACTING_FRAMES,
                50,
                f"Extracted {len(sampled.frames)} frames ({video.duration_s / 60:.1f} min)",
            )
        )

        if self.model is None:
            run.notes.append(NO_MODEL_NOTE)
            await emit(progress(pb.STAGE_INFERENCE, 75, NO_MODEL_PROGRESS))
        else:
            await self._infer(run, self.model, sampled, result)
        result.notes.extend(run.notes)
        run.timings.total_s = time.monotonic() - started
        result.timings.CopyFrom(run.timings)
        self.metrics.timings(run.timings, detection=run.detect, model=self.model is not None)
        await emit(
            progress(pb.STAGE_COMPLETE, 100, f"Analysis complete in {run.timings.total_s:.1f}s!")
        )
        return result

    async def _infer(
        self, run: Run, model: Model, sampled: Sampled, result: pb.AnalysisResult
    ) -> None:
        """The 75% stage: the model's summary, and the events it cites merged into the timeline."""
        started = time.monotonic()
        limits = model.limits()
        shown = prompting.frames_for_model(
            sampled.frames, sampled.files, limit=limits.max_images, images=limits.accepts_images
        )
        if limits.accepts_images:
            count = len(shown.files)
            doing, thinking = f"analyzing {count} frames", f"is reading {count} frames"
            if count < len(sampled.frames):
                run.notes.append(
                    f"The model saw {count} of the {len(sampled.frames)} sampled frames "
                    f"(it takes at most {limits.max_images} images a prompt)."
                )
        else:
            count = len(sampled.frames)
            doing = thinking = f"reading the timeline of {count} frames"
            run.notes.append(
                "The model reads text only: it was given the timeline of detections and "
                "scene changes, not the frames."
            )
        await run.emit(progress(pb.STAGE_INFERENCE, 75, f"{model.name} {doing}..."))
        await run.emit(
            Event(thinking=pb.ModelThinking(message=f"{model.name} {thinking}", frame_count=count))
        )
        result.summary = await self._summarise(run.job, model, sampled, result.timeline, shown)
        result.model = model.name
        merged = timeline.merge(
            result.timeline,
            timeline.model_events(
                result.summary, sampled.frames, duration_s=run.job.video.duration_s
            ),
        )
        del result.timeline[:]
        result.timeline.extend(merged)
        run.timings.inference_s = time.monotonic() - started

    async def _summarise(
        self,
        job: pb.Job,
        model: Model,
        sampled: Sampled,
        events: Sequence[pb.TimelineEvent],
        shown: prompting.Frames,
    ) -> str:
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
            priority=Priority.ANALYSIS,
            fair_key=job.id,
        )
        async with contextlib.aclosing(model.generate(request, kind="summary")) as stream:
            return "".join([delta.text async for delta in stream])
