"""One run of an analysis and the stages it is made of: probe, decode and detect.

``Run`` carries what one job's run accumulates (timings, notes, whether detection is still on)
and does the work the samplers and the pipeline share: decoding frames in child processes and
sending them to the detector, with their progress events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

from analyzer_service import media
from analyzer_service.detection import SOURCE_PREFIX, DetectorClient, DetectorUnavailable
from analyzer_service.isolation import MediaWorkers, RemoteError, WorkerCrashed, WorkerTimeout
from analyzer_service.media_storage import MediaMissing, MediaStorage
from analyzer_service.prompting import clock
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import Event
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2
from vigil.core.errors import VigilError

Emit = Callable[[Event], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")


def progress(stage: pb.Stage.ValueType, percent: float, message: str) -> Event:
    return Event(progress=pb.AnalysisProgress(stage=stage, percent=percent, message=message))


def found_message(frames: Sequence[pb.SampledFrame], dense: Sequence[pb.SampledFrame]) -> str:
    """What the detection pass found, for its 45% event."""
    weapons = sorted({d.class_name for f in frames for d in f.detections if d.is_weapon})
    others = sorted({d.class_name for f in frames for d in f.detections if not d.is_weapon})
    if weapons:
        times = [f.time_s for f in frames if any(d.is_weapon for d in f.detections)]
        message = (
            f"Weapon seen: {', '.join(weapons)} between {clock(min(times))} and {clock(max(times))}"
        )
        if dense:
            message += f"; looked at {len(dense)} more frames around it"
        return message
    if others:
        return f"No weapons seen; also seen: {', '.join(others)}"
    return "No weapons seen"


@dataclasses.dataclass
class Run:
    """One run of one job's analysis."""

    job: pb.Job
    emit: Emit
    settings: AnalyzerSettings
    workers: MediaWorkers
    detector: DetectorClient | None
    # The job's video is read from it; frames are decoded into frames_dir (its workdir).
    storage: MediaStorage
    frames_dir: pathlib.Path
    # On while the detection pass is wanted and the detector answers.
    detect: bool
    timings: pb.StageTimings = dataclasses.field(default_factory=pb.StageTimings)
    notes: list[str] = dataclasses.field(default_factory=list)

    async def video_source(self) -> str:
        """What ffmpeg opens to read the job's video; VIDEO_MISSING when it is no longer stored
        (on shared storage, any replica's upload is found)."""
        try:
            return await asyncio.to_thread(self.storage.video_source, self.job.video.id)
        except MediaMissing as exc:
            raise VigilError(
                "the uploaded video is no longer stored", code="VIDEO_MISSING"
            ) from exc

    async def probe(self) -> None:
        """Check that the stored video is still there and still decodes (the 10% stage)."""
        started = time.monotonic()
        try:
            source = await self.video_source()
            await self._in_child(self.settings.probe_timeout_s, media.probe, source)
        finally:
            self.timings.probe_s = time.monotonic() - started

    async def decode(
        self,
        targets: Sequence[float],
        *,
        prefix: str,
        thumbnail_side: int = 0,
        slack_s: float = 0.0,
    ) -> list[media.FrameFile]:
        started = time.monotonic()
        try:
            source = await self.video_source()
            return await self._in_child(
                self.settings.sampling_timeout_s,
                media.sample_frames,
                source,
                list(targets),
                str(self.frames_dir),
                max_side=self.settings.frame_max_side,
                jpeg_quality=self.settings.frame_jpeg_quality,
                prefix=prefix,
                thumbnail_side=thumbnail_side,
                slack_s=slack_s,
            )
        finally:
            self.timings.sampling_s += time.monotonic() - started

    async def detect_pass(
        self, files: Sequence[pathlib.Path], *, announce: bool = True
    ) -> list[list[common_pb2.Detection] | None]:
        """Detections for each file; all None when detection is off or the detector is away.

        The first failure turns detection off for the rest of the job and leaves a note.
        """
        if not self.detect or self.detector is None or not files:
            return [None] * len(files)
        if announce:
            await self.emit(
                progress(
                    pb.STAGE_DETECTING,
                    40,
                    f"Looking for weapons and people in {len(files)} frames...",
                )
            )
        started = time.monotonic()
        try:
            found = await self.detector.detect(files, source_id=SOURCE_PREFIX + self.job.id)
        except DetectorUnavailable as exc:
            self.detect = False
            self.notes.append(
                f"The detector service could not be used ({exc}); the analysis went on without "
                "object detections, so frames carry none and the timeline has scene changes only."
            )
            await self.emit(
                progress(
                    pb.STAGE_DETECTING, 45, "Detector unavailable; continuing without detections"
                )
            )
            return [None] * len(files)
        finally:
            self.timings.detection_s += time.monotonic() - started
        refused = sum(1 for dets in found if dets is None)
        if refused:
            self.notes.append(f"The detector could not read {refused} of {len(files)} frames.")
        return found

    async def announce_found(
        self, frames: Sequence[pb.SampledFrame], dense: Sequence[pb.SampledFrame] = ()
    ) -> None:
        if self.detect:
            await self.emit(progress(pb.STAGE_DETECTING, 45, found_message(frames, dense)))

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
