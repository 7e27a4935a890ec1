"""The gRPC face of the analyzer: validates requests and maps domain errors to statuses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc

from analyzer_service import sampling, uploads
from analyzer_service.chat import Chat
from analyzer_service.detection import DetectorClient
from analyzer_service.engine import EngineMonitor, not_configured
from analyzer_service.isolation import MediaWorkers
from analyzer_service.jobs import JobManager
from analyzer_service.media_storage import MediaStorage
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.recording_ranges import RecordingFetcher, check_range
from analyzer_service.rule_checks import RuleChecker
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.upload_slots import UploadSlots, client_of
from analyzer_service.verification import Verifier
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core import upload_protocol
from vigil.core.errors import InvalidInput, NotFound, VigilError, abort_with

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class _StatusOnError(contextlib.AbstractAsyncContextManager[None]):
    """Ends the call with the error's status when a VigilError escapes the block, and counts it."""

    def __init__(self, context: Context, metrics: AnalyzerMetrics) -> None:
        self.context = context
        self.metrics = metrics
        self.refused = False

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, VigilError):
            self.refused = True
            self.metrics.refusals.labels(exc.code).inc()
            await abort_with(self.context, exc)


class AnalyzerServicer(pb_grpc.AnalyzerServiceServicer):
    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        jobs: JobManager,
        workers: MediaWorkers,
        monitor: EngineMonitor | None = None,
        metrics: AnalyzerMetrics | None = None,
        detector: DetectorClient,
        storage: MediaStorage,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.metrics = metrics or jobs.metrics
        self.jobs = jobs
        self.workers = workers
        self.monitor = monitor
        model, frames = jobs.pipeline.model, jobs.pipeline.frames
        self.chat = (
            None
            if model is None
            else Chat(settings=settings, store=jobs.store, model=model, frames=frames)
        )
        self.verifier: Verifier | None = None
        self.rules: RuleChecker | None = None
        if model is not None:
            self.verifier = Verifier(settings=settings, model=model, metrics=self.metrics)
            self.rules = RuleChecker(settings=settings, model=model, metrics=self.metrics)
        self.upload_slots = UploadSlots(settings.max_concurrent_uploads, settings.upload_share)
        self.recordings = RecordingFetcher(
            settings=settings, workers=workers, detector=detector, storage=storage
        )

    async def UploadVideo(
        self, request_iterator: AsyncIterator[pb.UploadVideoRequest], context: Context
    ) -> pb.UploadVideoResponse:
        started = time.monotonic()
        async with _StatusOnError(context, self.metrics):
            client = client_of(context, self.settings.trusted_proxies)
            with self.upload_slots.hold(client):
                # The handshake of ``vigil.core.upload_protocol``: initial metadata once the header
                # passed, so that clients send chunks only then and a refusal reaches them intact.
                header, video = await uploads.receive(
                    request_iterator,
                    settings=self.settings,
                    workers=self.workers,
                    storage=self.storage,
                    on_accepted=lambda: context.send_initial_metadata(upload_protocol.ACCEPTED),
                )
            await self._record(video)
            self.metrics.stage.labels("upload").observe(time.monotonic() - started)
            response = pb.UploadVideoResponse(video=video)
            if header.start_analysis:
                response.job.CopyFrom(await self.jobs.submit(video, header.options))
            return response

    async def StartAnalysis(
        self, request: pb.StartAnalysisRequest, context: Context
    ) -> pb.StartAnalysisResponse:
        async with _StatusOnError(context, self.metrics):
            sampling.check_options(request.options, self.settings)
            if request.HasField("recording"):
                return await self._analyze_recording(request, context)
            video = await self.jobs.store.get_video(request.video_id)
            if video is None:
                raise NotFound(f"no video {request.video_id!r}")
            return pb.StartAnalysisResponse(job=await self.jobs.submit(video, request.options))

    async def _analyze_recording(
        self, request: pb.StartAnalysisRequest, context: Context
    ) -> pb.StartAnalysisResponse:
        """Fetch the range from the detector service, store it as a video, start its job."""
        if request.video_id:
            raise InvalidInput("give either video_id or recording, not both", field="recording")
        check_range(request.recording, self.settings, time.time())
        started = time.monotonic()
        # A fetch writes a video to disk as an upload does, and shares the uploads' slots.
        with self.upload_slots.hold(client_of(context, self.settings.trusted_proxies)):
            video, covered = await self.recordings.fetch(request.recording)
        await self._record(video)
        self.metrics.stage.labels("recording").observe(time.monotonic() - started)
        job = await self.jobs.submit(video, request.options, recording=covered)
        return pb.StartAnalysisResponse(job=job)

    async def _record(self, video: pb.Video) -> None:
        """Keep the stored video's row. Once stored, a video is recorded even if the caller goes
        now; a row that cannot be written (the database failing) takes the stored video with it,
        so that no replica's storage keeps a video nothing names."""
        try:
            await asyncio.shield(self.jobs.store.create_video(video))
        except Exception:
            await asyncio.shield(asyncio.to_thread(self.storage.delete_video, video.id))
            raise

    async def StreamAnalysisEvents(
        self, request: pb.StreamAnalysisEventsRequest, context: Context
    ) -> AsyncIterator[pb.StreamAnalysisEventsResponse]:
        async with _StatusOnError(context, self.metrics):
            async for event in self.jobs.follow(request.job_id, request.after_sequence):
                yield event

    async def Chat(
        self, request: pb.ChatRequest, context: Context
    ) -> AsyncIterator[pb.ChatResponse]:
        guard = _StatusOnError(context, self.metrics)
        # Stays "cancelled" when the caller goes away (GeneratorExit, CancelledError).
        outcome = "cancelled"
        try:
            async with guard:
                job = await self.jobs.get(request.job_id)
                if self.chat is None:
                    raise not_configured()
                question = self.chat.check_question(request.question)
                if self.monitor is not None:
                    self.monitor.ensure_healthy()
                generate = await self.chat.request(
                    job, question, self.chat.max_tokens(request.max_tokens)
                )
                async for response in self.chat.answer(job, question, generate):
                    yield response
            outcome = "ok"
        except Exception:
            outcome = "refused" if guard.refused else "error"
            raise
        finally:
            self.metrics.chat_requests.labels(outcome).inc()

    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        async with _StatusOnError(context, self.metrics):
            return pb.GetJobResponse(job=await self.jobs.get(request.job_id))

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        async with _StatusOnError(context, self.metrics):
            page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            try:
                jobs, token = await self.jobs.list(
                    page_size=page_size, page_token=request.page_token, state=request.state
                )
            except ValueError as exc:
                raise InvalidInput("invalid page_token") from exc
            return pb.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        async with _StatusOnError(context, self.metrics):
            return pb.CancelJobResponse(job=await self.jobs.cancel(request.job_id))

    async def VerifyIncident(
        self, request: pb.VerifyIncidentRequest, context: Context
    ) -> pb.VerifyIncidentResponse:
        async with _StatusOnError(context, self.metrics):
            if self.verifier is None:
                raise not_configured()
            return pb.VerifyIncidentResponse(verification=await self.verifier.verify(request))

    async def CheckWatchRule(
        self, request: pb.CheckWatchRuleRequest, context: Context
    ) -> pb.CheckWatchRuleResponse:
        async with _StatusOnError(context, self.metrics):
            if self.rules is None:
                raise not_configured()
            return await self.rules.check(request)
