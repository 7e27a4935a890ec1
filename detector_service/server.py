"""Starting and stopping the detector service."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from detector_service import alerts, backends
from detector_service.backends import BackendUnavailable
from detector_service.batcher import InferenceBatcher
from detector_service.event_stores import open_event_store
from detector_service.events import EventLog
from detector_service.evidence_key import load_key
from detector_service.health_monitor import HealthMonitor
from detector_service.incidents.config import IncidentConfig
from detector_service.incidents.postgres_store import (
    IncidentStoreUnavailable,
    PostgresIncidentStore,
)
from detector_service.incidents.stores import open_incident_store
from detector_service.incidents.tracker import IncidentTracker, open_tracker
from detector_service.metrics import (
    DetectorMetrics,
    ReviewCollector,
    SourceCollector,
    WatchRuleCollector,
)
from detector_service.native_logs import silence_native_logs
from detector_service.ownership import Ownership
from detector_service.postgres_events import EventStoreUnavailable, PostgresEvents
from detector_service.postgres_sources import PostgresSourceStore, SourceStoreUnavailable
from detector_service.private import private_dir
from detector_service.recorder import Recorder
from detector_service.recording.exports import ExportCache
from detector_service.recording.postgres_index import RecordingIndexUnavailable
from detector_service.redirects import OwnerRedirects
from detector_service.replica_roles import close_left_open, review_stats, run_elsewhere
from detector_service.rule_checker import RuleChecker
from detector_service.service import DetectorServicer
from detector_service.settings import DetectorSettings
from detector_service.source_stores import open_source_store
from detector_service.sources import SourceRegistry, load_sources_file
from detector_service.verification import VerificationCollector, Verifier
from detector_service.watch_rules import WatchRules
from detector_service.zones import Zones
from vigil.core.errors import InvalidInput, VigilError
from vigil.core.metrics_http import serve_metrics
from vigil.core.serving import Service, auth_interceptors, configure_logging, run_forever
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk.analyzer import AsyncAnalyzerClient
from vigil.sdk.model_types import Sampling
from vigil.sdk.options import ClientOptions, with_tls

log = logging.getLogger("detector_service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DetectorService"].full_name
# Consecutive failed inference batches after which health turns NOT_SERVING.
UNHEALTHY_AFTER_FAILURES = 3


@dataclass
class DetectorServer:
    service: Service
    registry: SourceRegistry
    batcher: InferenceBatcher
    pool: concurrent.futures.ThreadPoolExecutor
    incidents: IncidentTracker
    metrics: DetectorMetrics
    recorder: Recorder
    exports: ExportCache
    #: Zone and camera-health events: ``events.record`` is how producers report them.
    events: EventLog
    #: Watch-rule checks (their queue and the analyzer's client).
    rule_checker: RuleChecker | None = None
    watch_rules: WatchRules | None = None
    #: Background work that ends with the server (the model's health watch).
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: What else closes with it (the metrics HTTP server).
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: The language model's check of new incidents; None when no analyzer is configured.
    verifier: Verifier | None = None
    #: Which sources this replica runs, when replicas share PostgreSQL.
    ownership: Ownership | None = None

    @property
    def port(self) -> int:
        return self.service.port

    async def stop(self, grace: float) -> None:
        for task in self.tasks:
            task.cancel()
        if self.ownership is not None:
            # Handed back first: the other replicas take the sources over at once.
            await self.ownership.stop()
        await self.service.stop(grace)
        self.registry.close()
        # Threads left running into interpreter exit can abort it from inside OpenCV.
        await asyncio.to_thread(self.registry.join, 10.0)
        if self.rule_checker is not None:
            await self.rule_checker.close()
        if self.watch_rules is not None:  # before the incidents: its open ones close first
            self.watch_rules.end_all()
        await asyncio.to_thread(self.batcher.close)
        if self.verifier is not None:  # incidents still PENDING are retried at the next start
            await self.verifier.close()
        await asyncio.to_thread(self.incidents.close)
        # After the incidents: closing them holds their recordings.
        await asyncio.to_thread(self.recorder.close)
        await asyncio.to_thread(self.exports.close)
        await asyncio.to_thread(self.events.close)
        await asyncio.to_thread(self.registry.store.close)
        self.pool.shutdown(wait=False, cancel_futures=True)
        # The metrics server's shutdown waits for its thread: not on the event loop.
        await asyncio.to_thread(self.closing.close)


def incident_config(settings: DetectorSettings) -> IncidentConfig:
    return IncidentConfig(
        min_frames=settings.incident_min_frames,
        window=settings.incident_window,
        cooldown_s=settings.incident_cooldown_s,
        close_after_s=settings.incident_close_after_s,
        webhook_url=settings.incident_webhook_url,
        db_path=settings.data_dir / "incidents.sqlite3",
        clip_dir=settings.data_dir / "clips" if settings.incident_clips else None,
        pre_s=settings.incident_clip_pre_s,
        post_s=settings.incident_clip_post_s,
        track_lost_s=settings.track_lost_s,
    )


async def watch_model_health(service: Service, batcher: InferenceBatcher) -> None:
    """NOT_SERVING while the model keeps failing; SERVING again once a batch succeeds."""
    serving = True
    while True:
        await asyncio.sleep(0.5)
        healthy = batcher.failure_streak < UNHEALTHY_AFTER_FAILURES
        if healthy != serving:
            serving = healthy
            log.warning(
                "model %s: health %s",
                batcher.backend.model_name,
                "SERVING" if healthy else "NOT_SERVING",
            )
            await service.set_serving(healthy)


def rule_checker(settings: DetectorSettings) -> RuleChecker:
    """The watch-rule checks' queue, with a client of the analyzer when one is configured."""
    client = None
    if settings.analyzer_url:
        token = settings.analyzer_token or settings.token
        options = ClientOptions(
            address=settings.analyzer_url,
            token=token.get_secret_value() if token else None,
            timeout_s=settings.watch_rule_timeout_s,
        )
        client = AsyncAnalyzerClient(with_tls(options, settings.analyzer_tls))
    sampling = None
    if settings.watch_rule_seed is not None or settings.watch_rule_temperature is not None:
        sampling = Sampling(
            temperature=settings.watch_rule_temperature, seed=settings.watch_rule_seed
        )
    return RuleChecker(
        asyncio.get_running_loop(),
        client,
        queue_size=settings.watch_rule_queue,
        concurrency=settings.watch_rule_concurrency,
        timeout_s=settings.watch_rule_timeout_s,
        sampling=sampling,
    )


async def serve(settings: DetectorSettings) -> DetectorServer:
    """Load the model, register the sources and start serving."""
    extra_sources = load_sources_file(settings.sources_file) if settings.sources_file else []
    backend = await asyncio.to_thread(backends.create, settings)
    metrics = DetectorMetrics()
    histogram = metrics.inference.labels(backend.model_name)
    batcher = InferenceBatcher(
        backend,
        max_wait_s=settings.batch_wait_s,
        on_batch=lambda seconds, frames: histogram.observe(seconds),
        release_after_s=settings.model_idle_s,
        on_release=metrics.model_releases.labels(backend.model_name).inc,
    )
    # Incidents, snapshots and clips are for the service's user alone.
    await asyncio.to_thread(private_dir, settings.data_dir)
    # Before any source starts: recovery finishes the segments a killed run left open.
    recorder = await asyncio.to_thread(Recorder.open, settings)
    exports_dir = await asyncio.to_thread(ExportCache.prepare, settings.data_dir / "exports")
    exports = ExportCache(recorder.index, exports_dir, settings.export_cache_s)
    evidence_key = await asyncio.to_thread(load_key, settings)
    incident_store = await asyncio.to_thread(open_incident_store, settings)
    incidents = await asyncio.to_thread(
        open_tracker,
        incident_config(settings),
        asyncio.get_running_loop(),
        recorder,
        incident_store,
    )
    if isinstance(incident_store, PostgresIncidentStore):
        # Replicas: the other replicas' incidents and reviews reach this one's streams too.
        await asyncio.to_thread(incident_store.watch, incidents.relay)
    event_store = await asyncio.to_thread(open_event_store, settings)
    events = EventLog(event_store, asyncio.get_running_loop())
    if isinstance(event_store, PostgresEvents):
        # Replicas: the zone and camera-health events of the others' sources stream here too.
        await asyncio.to_thread(event_store.watch, events.relay)
    # Before any source starts: every weapon incident of this run is verified.
    verifier = None
    if settings.analyzer_url:
        verifier = Verifier(settings, incidents)
        verifier.start()
    zones = Zones(settings.track_lost_s, events.record)
    incidents.place = zones.place
    store = await asyncio.to_thread(open_source_store, settings)
    # Camera-health events go to the event log (ListEvents, StreamIncidents) like zone events.
    health = HealthMonitor(settings, on_event=events.record)
    checker = rule_checker(settings)
    watch_rules = WatchRules(settings, checker.submit if checker.enabled else None, incidents)
    registry = SourceRegistry(
        settings,
        batcher,
        store,
        observer=incidents,
        zones=zones,
        health=health,
        recorder=recorder,
        rules=watch_rules,
    )
    configured = [
        pb.SourceSpec(
            id=settings.default_source_id,
            kind=pb.SOURCE_KIND_TEST_PATTERN,
            display_name="Test pattern",
        ),
        *extra_sources,
    ]
    ownership = None
    interceptors = auth_interceptors(settings.token)
    if isinstance(store, PostgresSourceStore):
        # Replicas: each source runs where its lease is held (claimed once serving, below).
        ownership = Ownership(
            store,
            registry,
            replica=settings.replica,
            lease_s=settings.lease_s,
            renew_s=settings.lease_renew_s,
            configured=configured,
            outages=metrics.lease_outages,
            started=lambda source_id, at_ns: close_left_open(incidents, source_id, at_ns),
        )
        interceptors.append(OwnerRedirects(ownership, settings.default_source_id))
    else:
        for spec in configured:
            registry.add(spec)
        # After the configured sources: on an id both have, configuration wins.
        registry.restore(await asyncio.to_thread(store.load))
        await registry.apply_overrides(await asyncio.to_thread(store.load_overrides))
    incidents.alert_policy = alert_policies(settings, registry, verifier is not None)
    if verifier is not None:
        metrics.registry.register(VerificationCollector(verifier))
    metrics.watch(
        SourceCollector(
            lambda: [s.snapshot() for s in registry.all()],
            lambda: incidents.opened,
            lambda: batcher.errors,
        )
    )
    metrics.watch(ReviewCollector(lambda: review_stats(incidents.store, registry, ownership)))
    metrics.watch(
        WatchRuleCollector(lambda: [s.snapshot() for s in registry.all()], lambda: checker.dropped)
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="detect")
    service = Service(service_names=[SERVICE_NAME], interceptors=interceptors)
    pb_grpc.add_DetectorServiceServicer_to_server(
        DetectorServicer(
            settings, registry, batcher, pool, incidents, recorder, exports, events, evidence_key
        ),
        service.server,
    )
    await service.start_with(settings)
    if ownership is not None:
        await ownership.start(advertised(settings, service.port))
    closing = contextlib.ExitStack()
    closing.callback(health.close)
    if settings.metrics_port is not None:
        _port, stop_metrics = serve_metrics(metrics.registry, settings.host, settings.metrics_port)
        closing.callback(stop_metrics)
    server = DetectorServer(
        service,
        registry,
        batcher,
        pool,
        incidents,
        metrics,
        recorder,
        exports,
        events,
        rule_checker=checker,
        watch_rules=watch_rules,
        tasks=[
            asyncio.create_task(watch_model_health(service, batcher)),
            asyncio.create_task(
                recorder.keep_retention(
                    lambda: [s.spec for s in registry.all()],
                    run_elsewhere(ownership) if ownership is not None else None,
                )
            ),
        ],
        closing=closing,
        verifier=verifier,
        ownership=ownership,
    )
    log.info(
        "detector service on %s:%d (backend %s, %d sources)",
        settings.host,
        service.port,
        backend.model_name,
        len(registry.all()),
    )
    return server


def alert_policies(
    settings: DetectorSettings, registry: SourceRegistry, verifying: bool
) -> Callable[[str], alerts.Policy]:
    """Each source's alert policy: its spec's, else the service's (without verification every
    incident alerts at opening)."""
    default = alerts.POLICY_OF_NAME[settings.alert_policy]

    def policy(source_id: str) -> alerts.Policy:
        try:
            own = registry.get(source_id).spec.alert_policy
        except VigilError:  # removed meanwhile
            own = pb.ALERT_POLICY_UNSPECIFIED
        return alerts.resolve(own, default, verifying)

    return policy


def advertised(settings: DetectorSettings, port: int) -> str:
    """Where clients sent here by another replica reach this one."""
    if settings.advertise_address:
        return settings.advertise_address
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def main() -> None:
    # First: the C libraries of the capture print camera URLs (passwords included) to stderr.
    silence_native_logs()
    settings = DetectorSettings()
    configure_logging(settings.log_level)

    async def run(stop: asyncio.Event) -> None:
        server = await serve(settings)
        await stop.wait()
        log.info("stopping: draining for up to %.0f s", settings.grace_s)
        await server.stop(settings.grace_s)

    try:
        run_forever(run)
    except (
        BackendUnavailable,
        InvalidInput,
        SourceStoreUnavailable,
        IncidentStoreUnavailable,
        EventStoreUnavailable,
        RecordingIndexUnavailable,
    ) as exc:
        # A configuration the operator must change (a missing key, model or sources file): one
        # line saying what to set, not a traceback. The messages never hold secrets.
        sys.exit(f"detector service cannot start: {exc}")
