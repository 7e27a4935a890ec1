"""Wiring: store, event bus, media workers, engine, jobs and the gRPC server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from analyzer_service.detection import DetectorClient
from analyzer_service.engine import Engine, engine_from_settings
from analyzer_service.events import LocalEventBus
from analyzer_service.isolation import MediaWorkers
from analyzer_service.jobs import JobManager
from analyzer_service.pipeline import Pipeline
from analyzer_service.servicer import AnalyzerServicer
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.sqlite_store import SQLiteJobStore
from analyzer_service.store import JobStore
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.serving import Service

SERVICE_NAME = "vigil.analyzer.v1.AnalyzerService"

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AnalyzerServer:
    """A running analyzer; ``stop`` leaves unfinished jobs for the next start to account for."""

    port: int
    settings: AnalyzerSettings
    service: Service
    jobs: JobManager
    store: JobStore
    workers: MediaWorkers
    detector: DetectorClient | None = None
    stopped: bool = False

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let calls in flight finish for ``grace`` seconds, release everything.

        Safe to call more than once.
        """
        if self.stopped:
            return
        self.stopped = True
        await self.service.stop(grace)
        await self.jobs.close()
        await self.workers.close()
        if self.detector is not None:
            await self.detector.close()
        await self.store.close()


def _remove_partial_uploads(settings: AnalyzerSettings) -> None:
    # Uploads cut off by a crash leave their part files behind.
    settings.videos_dir.mkdir(parents=True, exist_ok=True)
    for part in settings.videos_dir.glob("*.part"):
        part.unlink(missing_ok=True)


async def serve(settings: AnalyzerSettings, *, engine: Engine | None = None) -> AnalyzerServer:
    """Start serving on ``settings.host:settings.port`` (0 picks a free port)."""
    if engine is None:
        engine = engine_from_settings(settings)
    await asyncio.to_thread(_remove_partial_uploads, settings)
    store = await SQLiteJobStore.open(settings.database)
    workers = MediaWorkers(settings.media_workers, preload=["analyzer_service.media"])
    workers.warm_up()
    detector = (
        DetectorClient(
            settings.detector_address,
            connect_timeout_s=settings.detector_connect_timeout_s,
            call_timeout_s=settings.detection_timeout_s,
        )
        if settings.detection_pass
        else None
    )
    jobs = JobManager(
        store=store,
        bus=LocalEventBus(settings.subscriber_queue),
        pipeline=Pipeline(settings=settings, workers=workers, engine=engine, detector=detector),
        max_running=settings.max_concurrent_jobs,
        max_queued=settings.max_queued_jobs,
        max_attempts=settings.max_attempts,
    )
    try:
        await jobs.recover()
        service = Service(service_names=[SERVICE_NAME])
        pb_grpc.add_AnalyzerServiceServicer_to_server(
            AnalyzerServicer(settings=settings, jobs=jobs, workers=workers, engine=engine),
            service.server,
        )
        port = await service.start(settings.host, settings.port)
    except BaseException:
        await jobs.close()
        await workers.close()
        if detector is not None:
            await detector.close()
        await store.close()
        raise
    return AnalyzerServer(
        port=port,
        settings=settings,
        service=service,
        jobs=jobs,
        store=store,
        workers=workers,
        detector=detector,
    )
