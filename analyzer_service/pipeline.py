"""The stages of one analysis: probe facts, sample frames, ask the model.

The pipeline only produces events and a result; the job manager owns state, storage and
cancellation, so new stages (detection, adaptive sampling) slot in here without touching either.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Awaitable, Callable

from analyzer_service import media, sampling
from analyzer_service.engine import Engine, GenerateRequest, not_configured
from analyzer_service.isolation import MediaWorkers, RemoteError, WorkerCrashed, WorkerTimeout
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import Event
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.errors import VigilError

Emit = Callable[[Event], Awaitable[None]]


def progress(stage: pb.Stage.ValueType, percent: float, message: str) -> Event:
    return Event(progress=pb.AnalysisProgress(stage=stage, percent=percent, message=message))


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"[{minutes:02d}:{secs:02d}]"


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
        self, *, settings: AnalyzerSettings, workers: MediaWorkers, engine: Engine | None
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.engine = engine

    async def run(self, job: pb.Job, emit: Emit) -> pb.AnalysisResult:
        """Emit the job's progress and return its result; raise VigilError when it fails."""
        started = time.monotonic()
        video = job.video
        await emit(progress(pb.STAGE_INITIALIZING, 10, "Starting video analysis..."))
        plan = sampling.plan(
            job.options,
            video,
            default_policy=self.settings.default_sampling_policy,
            uniform_frames=self.settings.uniform_frames,
        )
        if video.duration_s >= sampling.LONG_VIDEO_S:
            notice = long_video_notice(video.duration_s, len(plan.targets))
            await emit(
                Event(
                    long_video_detected=pb.LongVideoDetected(
                        duration_s=video.duration_s, message=notice
                    )
                )
            )

        await emit(progress(pb.STAGE_EXTRACTING_FRAMES, 25, "Extracting frames from video..."))
        sampling_started = time.monotonic()
        frames = await self._sample(job, plan)
        timings = pb.StageTimings(sampling_s=time.monotonic() - sampling_started)
        result = pb.AnalysisResult(
            frames=[
                pb.SampledFrame(time_s=frame.time_s, index=frame.index, reason=plan.reason)
                for frame in frames
            ],
            notes=plan.notes,
            timings=timings,
        )
        await emit(
            progress(
                pb.STAGE_EXTRACTING_FRAMES,
                50,
                f"Extracted {len(frames)} frames ({video.duration_s / 60:.1f} min)",
            )
        )

        if self.engine is None:
            raise not_configured()
        inference_started = time.monotonic()
        await emit(
            progress(
                pb.STAGE_INFERENCE, 75, f"{self.engine.model} analyzing {len(frames)} frames..."
            )
        )
        await emit(
            Event(
                thinking=pb.ModelThinking(
                    message=f"{self.engine.model} is reading {len(frames)} frames",
                    frame_count=len(frames),
                )
            )
        )
        result.summary = await self._summarise(job, frames)
        result.model = self.engine.model
        timings.inference_s = time.monotonic() - inference_started
        timings.total_s = time.monotonic() - started
        result.timings.CopyFrom(timings)
        await emit(
            progress(pb.STAGE_COMPLETE, 100, f"Analysis complete in {timings.total_s:.1f}s!")
        )
        return result

    def frames_dir(self, job: pb.Job) -> pathlib.Path:
        return self.settings.jobs_dir / job.id / "frames"

    async def _sample(self, job: pb.Job, plan: sampling.Plan) -> list[media.FrameFile]:
        out_dir = self.frames_dir(job)
        try:
            frames = await self.workers.call(
                self.settings.sampling_timeout_s,
                media.sample_frames,
                str(self.settings.videos_dir / job.video.id),
                plan.targets,
                str(out_dir),
                max_side=self.settings.frame_max_side,
                jpeg_quality=self.settings.frame_jpeg_quality,
            )
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
                f"reading frames took longer than {self.settings.sampling_timeout_s:g} s",
                code="DECODER_TIMEOUT",
            ) from exc
        # The manifest lets later work (chat, a resumed job) reuse the frames without decoding.
        manifest = [
            {"time_s": f.time_s, "index": f.index, "file": pathlib.Path(f.path).name}
            for f in frames
        ]
        (out_dir / "frames.json").write_text(json.dumps(manifest))
        return frames

    async def _summarise(self, job: pb.Job, frames: list[media.FrameFile]) -> str:
        assert self.engine is not None
        labels = " ".join(f"Frame {n + 1} {clock(f.time_s)}." for n, f in enumerate(frames))
        prompt = f"{job.options.prompt or self.settings.default_prompt}\n\n{labels}"
        request = GenerateRequest(
            request_id=job.id,
            prompt=prompt,
            images=[pathlib.Path(f.path) for f in frames],
            max_tokens=self.settings.max_tokens,
        )
        parts: list[str] = []
        stream = self.engine.generate(request)
        try:
            async for delta in stream:
                parts.append(delta)
        except BaseException:
            # Cancelled or failed mid-generation: free the engine's slot for the next job.
            await self.engine.abort(request.request_id)
            raise
        return "".join(parts)
