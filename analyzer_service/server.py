"""Wiring: store, event bus, media workers, engine, jobs and the gRPC server.

An engine made from the settings (``engines.catalog.create``) belongs to the server:
entered (``async with``: loaded) before the server listens, on the server's event loop (vLLM's
AsyncLLM stays on the loop that started it), and left when it stops. An engine passed in belongs
to the caller, who enters and leaves it. Either way its health is the service's: NOT_SERVING
while ``engine.health()`` fails, and everything that generates (analyses, chat, verifications,
watch rules) reaches it through the one scheduler (``scheduler.ScheduledEngine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable

from analyzer_service.detection import DetectorClient
from analyzer_service.engine import Engine, EngineMonitor
from analyzer_service.engines import catalog
from analyzer_service.events import LocalEventBus
from analyzer_service.frames import FramesStore
from analyzer_service.generation import Model
from analyzer_service.isolation import MediaWorkers
from analyzer_service.jobs import JobManager
from analyzer_service.media_storage import MediaStorage
from analyzer_service.media_storages import open_media_storage
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.pipeline import Pipeline
from analyzer_service.scheduler import ScheduledEngine
from analyzer_service.servicer import AnalyzerServicer
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import JobStore
from analyzer_service.stores import open_store
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core.metrics_http import serve_metrics
from vigil.core.serving import Service, auth_interceptors

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
    engine: Engine | None = None
    # The engine as the service uses it: requests wait here for their turn.
    scheduler: ScheduledEngine | None = None
    monitor: EngineMonitor | None = None
    metrics: AnalyzerMetrics = dataclasses.field(default_factory=AnalyzerMetrics)
    # The port Prometheus scrapes (None: not served), and how to stop serving it.
    metrics_port: int | None = None
    stop_metrics: Callable[[], None] | None = None
    # Whether ``stop`` shuts the engine down (it was made from the settings), and how.
    owns_engine: bool = False
    engine_exit: contextlib.AsyncExitStack = dataclasses.field(
        default_factory=contextlib.AsyncExitStack
    )
    stopped: bool = False

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let calls in flight finish for ``grace`` seconds, release everything.

        Safe to call more than once.
        """
        if self.stopped:
            return
        self.stopped = True
        if self.monitor is not None:
            await self.monitor.stop()
        await self.service.stop(grace)
        await self.jobs.close()
        await self.workers.close()
        if self.detector is not None:
            await self.detector.close()
        await self.store.close()
        await self.engine_exit.aclose()
        if self.stop_metrics is not None:
            await asyncio.to_thread(self.stop_metrics)


def _remove_partial_uploads(settings: AnalyzerSettings, storage: MediaStorage) -> None:
    # Uploads cut off by a crash leave their partial writes behind. Alone (SQLite: no other
    # replica) every partial write is a dead one. Replicas on one database share the storage:
    # another replica's write is dead only once idle past the upload timeout (twice it, for
    # clocks of the hosts on a shared volume that differ a little).
    shared = bool(settings.database_url.get_secret_value())
    removed = storage.remove_abandoned_uploads(
        2 * settings.upload_idle_timeout_s if shared else None
    )
    if removed:
        log.info("removed %d uploads cut off by a crash from %s", removed, storage.location)


async def serve(settings: AnalyzerSettings, *, engine: Engine | None = None) -> AnalyzerServer:
    """Start serving on ``settings.host:settings.port`` (0 picks a free port)."""
    engine_exit = contextlib.AsyncExitStack()
    owns_engine = engine is None
    if engine is None:
        made = catalog.create(settings)
        if made is not None:
            engine = await engine_exit.enter_async_context(made)
    try:
        server = await _serve(settings, engine)
    except BaseException:
        await engine_exit.aclose()
        raise
    server.owns_engine = owns_engine and engine is not None
    server.engine_exit = engine_exit
    return server


async def _serve(settings: AnalyzerSettings, engine: Engine | None) -> AnalyzerServer:
    storage = await asyncio.to_thread(open_media_storage, settings)
    await asyncio.to_thread(_remove_partial_uploads, settings, storage)
    store = await open_store(settings)
    workers = MediaWorkers(settings.media_workers, preload=["analyzer_service.media"])
    workers.warm_up()
    # Also used without the detection pass: analyses of recordings fetch them from it.
    detector = DetectorClient(
        settings.detector_address,
        connect_timeout_s=settings.detector_connect_timeout_s,
        call_timeout_s=settings.detection_timeout_s,
        token=settings.detector_token or settings.token,
        tls=settings.detector_tls,
    )
    metrics = AnalyzerMetrics()
    monitor: EngineMonitor | None = None
    scheduler: ScheduledEngine | None = None
    model: Model | None = None
    if engine is not None:
        monitor = EngineMonitor(
            engine,
            interval_s=settings.engine_health_interval_s,
            timeout_s=settings.engine_health_timeout_s,
        )
        scheduler = ScheduledEngine.from_settings(engine, settings, metrics)
        model = Model(scheduler, settings=settings, monitor=monitor, metrics=metrics)
    pipeline = Pipeline(
        settings=settings,
        workers=workers,
        model=model,
        frames=FramesStore(storage),
        detector=detector if settings.detection_pass else None,
        metrics=metrics,
    )
    jobs = JobManager(
        store=store,
        bus=LocalEventBus(settings.subscriber_queue),
        pipeline=pipeline,
        max_running=settings.max_concurrent_jobs,
        max_queued=settings.max_queued_jobs,
        max_attempts=settings.max_attempts,
        metrics=metrics,
        replica=settings.replica,
        lease_s=settings.lease_s,
        renew_s=settings.lease_renew_s,
    )
    metrics.watch_jobs(jobs.counts)
    metrics_port: int | None = None
    stop_metrics: Callable[[], None] | None = None
    try:
        # First: a port already taken stops the start before anything listens.
        if settings.metrics_port is not None:
            metrics_port, stop_metrics = serve_metrics(
                metrics.registry, settings.host, settings.metrics_port
            )
        await jobs.recover()
        service = Service(
            service_names=[SERVICE_NAME], interceptors=auth_interceptors(settings.token)
        )
        pb_grpc.add_AnalyzerServiceServicer_to_server(
            AnalyzerServicer(
                settings=settings,
                jobs=jobs,
                workers=workers,
                monitor=monitor,
                metrics=metrics,
                detector=detector,
                storage=storage,
            ),
            service.server,
        )
        port = await service.start_with(settings)
        if monitor is not None:
            monitor.on_change = service.set_serving
            # Its first check runs at once: an engine down from the start turns NOT_SERVING now.
            monitor.start()
    except BaseException:
        if stop_metrics is not None:
            stop_metrics()
        await jobs.close()
        await workers.close()
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
        engine=engine,
        scheduler=scheduler,
        monitor=monitor,
        metrics=metrics,
        metrics_port=metrics_port,
        stop_metrics=stop_metrics,
    )
