"""Prometheus metrics of the analyzer service, served on ``VIGIL_ANALYZER_METRICS_PORT`` when set.

* ``vigil_analyzer_jobs{state}``: jobs queued and running now (read from the job manager when
  Prometheus scrapes); ``vigil_analyzer_queue_length``: jobs waiting for a worker
* ``vigil_analyzer_jobs_finished_total{state}``: jobs that ended succeeded, failed or cancelled
* ``vigil_analyzer_stage_seconds{stage}``: upload (receive, store and probe), probe, sampling,
  detection, model and total, per finished upload or analysis
* ``vigil_analyzer_engine_ttft_seconds{kind}`` and ``vigil_analyzer_engine_tokens_per_second
  {kind}``: the language model's time to first token and decode rate (tokens after the first
  over the time after it), for summaries and chat answers that ran to the end
* ``vigil_analyzer_chat_requests_total{outcome}``: ok, refused, error, cancelled (caller left)
* ``vigil_analyzer_refusals_total{code}``: calls refused with an error of ``vigil.core.errors`` (the
  code the caller sees: INVALID_INPUT, NOT_FOUND, RESOURCE_EXHAUSTED, MODEL_NOT_CONFIGURED...)
* ``vigil_analyzer_engine_waiting{priority}``: generations waiting for the engine now, per class
  (verification, chat, watch_rule, analysis); ``vigil_analyzer_engine_running``: generations in the
  engine now; ``vigil_analyzer_engine_wait_seconds{priority}``: how long each waited for its slot
* ``vigil_analyzer_verifications_total{verdict}``: incidents the model verified (confirmed,
  rejected, uncertain), and ``vigil_analyzer_verification_seconds`` the model's time for each
* ``vigil_analyzer_rule_checks_total{rule_id}``, ``vigil_analyzer_rule_matches_total{rule_id}``
  (yes answers) and ``vigil_analyzer_rule_model_seconds_total{rule_id}``: watch-rule checks per
  rule (rule ids are few and bounded: the detector validates its rules)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from analyzer_service.engine import Delta, Engine, GenerateRequest, Priority
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2 as cpb

STAGE_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
WAIT_BUCKETS_S = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class JobsCollector(Collector):
    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        counts = self.counts()
        jobs = GaugeMetricFamily(
            "vigil_analyzer_jobs", "Jobs queued and running now", labels=["state"]
        )
        for state in ("queued", "running"):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        yield GaugeMetricFamily(
            "vigil_analyzer_queue_length",
            "Jobs waiting for a worker",
            value=counts.get("queued", 0),
        )


class AnalyzerMetrics:
    """The service's registry; one per service, so servers in one process never collide."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.jobs_finished = Counter(
            "vigil_analyzer_jobs_finished", "Jobs that ended, by state", ["state"], registry=r
        )
        self.stage = Histogram(
            "vigil_analyzer_stage_seconds",
            "Seconds per stage of an upload or analysis",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=r,
        )
        self.ttft = Histogram(
            "vigil_analyzer_engine_ttft_seconds",
            "Seconds from asking the language model to its first token",
            ["kind"],
            buckets=TTFT_BUCKETS_S,
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "vigil_analyzer_engine_tokens_per_second",
            "Tokens per second after the first token",
            ["kind"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.chat_requests = Counter(
            "vigil_analyzer_chat_requests", "Chat calls, by outcome", ["outcome"], registry=r
        )
        self.refusals = Counter(
            "vigil_analyzer_refusals", "Calls refused, by error code", ["code"], registry=r
        )
        self.database_waits = Counter(
            "vigil_analyzer_database_waits",
            "Times work under way (a job storing its events, a follower reading them) found the"
            " job database out of reach and waited for it (a restart, a failover)",
            registry=r,
        )
        self.engine_wait = Histogram(
            "vigil_analyzer_engine_wait_seconds",
            "Seconds a generation waited for a slot in the engine, by priority class",
            ["priority"],
            buckets=WAIT_BUCKETS_S,
            registry=r,
        )
        self.verifications = Counter(
            "vigil_analyzer_verifications",
            "Incidents verified by the model, by verdict",
            ["verdict"],
            registry=r,
        )
        self.verification_seconds = Histogram(
            "vigil_analyzer_verification_seconds",
            "Seconds the model took to verify an incident",
            buckets=TTFT_BUCKETS_S,
            registry=r,
        )
        self.rule_checks = Counter(
            "vigil_analyzer_rule_checks", "Watch-rule checks, by rule", ["rule_id"], registry=r
        )
        self.rule_matches = Counter(
            "vigil_analyzer_rule_matches",
            "Watch-rule checks answered yes, by rule",
            ["rule_id"],
            registry=r,
        )
        self.rule_model_seconds = Counter(
            "vigil_analyzer_rule_model_seconds",
            "Seconds the model spent on watch-rule checks, by rule",
            ["rule_id"],
            registry=r,
        )

    def watch_jobs(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(JobsCollector(counts))

    def job_finished(self, state: pb.JobState.ValueType) -> None:
        name = pb.JobState.Name(state).removeprefix("JOB_STATE_").lower()
        self.jobs_finished.labels(name).inc()

    def verified(self, verification: cpb.Verification) -> None:
        name = cpb.Verdict.Name(verification.verdict).removeprefix("VERDICT_").lower()
        self.verifications.labels(name).inc()
        self.verification_seconds.observe(verification.model_seconds)

    def rule_checked(self, rule_id: str, matched: bool, seconds: float) -> None:
        self.rule_checks.labels(rule_id).inc()
        if matched:
            self.rule_matches.labels(rule_id).inc()
        self.rule_model_seconds.labels(rule_id).inc(seconds)

    def timings(self, timings: pb.StageTimings, *, detection: bool, model: bool) -> None:
        """A finished analysis's stages (those that ran)."""
        self.stage.labels("probe").observe(timings.probe_s)
        self.stage.labels("sampling").observe(timings.sampling_s)
        if detection:
            self.stage.labels("detection").observe(timings.detection_s)
        if model:
            self.stage.labels("model").observe(timings.inference_s)
        self.stage.labels("total").observe(timings.total_s)

    async def deltas(
        self, engine: Engine, request: GenerateRequest, *, kind: str
    ) -> AsyncGenerator[Delta, None]:
        """``engine.deltas`` timed: time to first token, and the decode rate once it ends."""
        asked = time.monotonic()
        first: float | None = None
        tokens = 0
        async with contextlib.aclosing(engine.deltas(request)) as stream:
            async for delta in stream:
                if first is None and delta.tokens:
                    first = time.monotonic()
                    self.ttft.labels(kind).observe(first - asked)
                tokens += delta.tokens
                yield delta
        elapsed = time.monotonic() - first if first is not None else 0.0
        if tokens > 1 and elapsed > 0:
            self.tokens_per_s.labels(kind).observe((tokens - 1) / elapsed)

    def watch_scheduler(
        self, waiting: Callable[[], Mapping[Priority, int]], running: Callable[[], int]
    ) -> None:
        self.registry.register(SchedulerCollector(waiting, running))

    def engine_waited(self, priority: Priority, seconds: float) -> None:
        self.engine_wait.labels(priority.name.lower()).observe(seconds)


class SchedulerCollector(Collector):
    """The engine scheduler's queue, read when Prometheus scrapes."""

    def __init__(
        self, waiting: Callable[[], Mapping[Priority, int]], running: Callable[[], int]
    ) -> None:
        self.waiting = waiting
        self.running = running

    def collect(self) -> Iterable[GaugeMetricFamily]:
        waiting = GaugeMetricFamily(
            "vigil_analyzer_engine_waiting",
            "Generations waiting for a slot in the engine, by priority class",
            labels=["priority"],
        )
        counts = self.waiting()
        for priority in Priority:
            waiting.add_metric([priority.name.lower()], counts.get(priority, 0))
        yield waiting
        yield GaugeMetricFamily(
            "vigil_analyzer_engine_running",
            "Generations running in the engine",
            value=self.running(),
        )
