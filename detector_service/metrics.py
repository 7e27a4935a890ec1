"""Prometheus metrics of the detector service.

Per-source figures are read from the sources' own counters when Prometheus scrapes (a custom
collector), so the frame path pays nothing for them; the inference latency histogram is fed by the
inference thread once per batch.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

INFERENCE_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
CAMERA_PROBLEMS = (
    pb.SOURCE_EVENT_KIND_CAMERA_FROZEN,
    pb.SOURCE_EVENT_KIND_CAMERA_COVERED,
    pb.SOURCE_EVENT_KIND_CAMERA_DEFOCUSED,
    pb.SOURCE_EVENT_KIND_CAMERA_MOVED,
)


class SourceCollector(Collector):
    def __init__(
        self,
        sources: Callable[[], Iterable[pb.Source]],
        incidents: Callable[[], int],
        backend_errors: Callable[[], int],
    ) -> None:
        self.sources = sources
        self.incidents = incidents
        self.backend_errors = backend_errors

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["source"]
        fps_in = GaugeMetricFamily("vigil_source_fps_in", "Frames per second read", labels=labels)
        fps_out = GaugeMetricFamily(
            "vigil_source_fps_out", "Frames per second published", labels=labels
        )
        subscribers = GaugeMetricFamily(
            "vigil_source_subscribers", "Subscribers connected", labels=labels
        )
        live = GaugeMetricFamily("vigil_source_live", "1 while the source is live", labels=labels)
        dropped = CounterMetricFamily(
            "vigil_source_frames_dropped", "Frames dropped for slow subscribers", labels=labels
        )
        replaced = CounterMetricFamily(
            "vigil_source_frames_replaced",
            "Captured frames replaced before processing",
            labels=labels,
        )
        published = CounterMetricFamily(
            "vigil_source_frames_published", "Frames published", labels=labels
        )
        errors = CounterMetricFamily(
            "vigil_source_detection_errors", "Frames whose detection failed", labels=labels
        )
        reconnects = CounterMetricFamily(
            "vigil_source_reconnects", "Times the input was reopened", labels=labels
        )
        motion = CounterMetricFamily(
            "vigil_source_frames_with_motion", "Frames in which motion was found", labels=labels
        )
        detected = CounterMetricFamily(
            "vigil_source_frames_detected", "Frames given to the object detector", labels=labels
        )
        skipped = CounterMetricFamily(
            "vigil_source_frames_skipped", "Frames not detected: nothing moved", labels=labels
        )
        problem = GaugeMetricFamily(
            "vigil_source_camera_problem",
            "1 while the camera has this problem (frozen, covered, defocused, moved)",
            labels=["source", "problem"],
        )
        for source in self.sources():
            value = [source.spec.id]
            for kind in CAMERA_PROBLEMS:
                name = pb.SourceEventKind.Name(kind).removeprefix("SOURCE_EVENT_KIND_CAMERA_")
                present = 1.0 if kind in source.camera_problems else 0.0
                problem.add_metric([source.spec.id, name.lower()], present)
            c = source.counters
            fps_in.add_metric(value, c.fps_in)
            fps_out.add_metric(value, c.fps_out)
            subscribers.add_metric(value, c.subscribers)
            live.add_metric(value, 1.0 if source.state == pb.SOURCE_STATE_LIVE else 0.0)
            dropped.add_metric(value, c.frames_dropped)
            replaced.add_metric(value, c.frames_replaced)
            published.add_metric(value, c.frames_published)
            errors.add_metric(value, c.detection_errors)
            reconnects.add_metric(value, c.reconnects)
            motion.add_metric(value, c.frames_with_motion)
            detected.add_metric(value, c.frames_detected)
            skipped.add_metric(value, c.frames_skipped)
        yield from (
            fps_in,
            fps_out,
            subscribers,
            live,
            dropped,
            replaced,
            published,
            errors,
            reconnects,
            motion,
            detected,
            skipped,
            problem,
        )
        yield CounterMetricFamily("vigil_incidents", "Incidents opened", value=self.incidents())
        yield CounterMetricFamily(
            "vigil_backend_errors", "Failed inference batches", value=self.backend_errors()
        )


class DetectorMetrics:
    """The service's registry; ``inference`` is observed by the inference thread."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inference = Histogram(
            "vigil_inference_seconds",
            "Model time per batch",
            ["model"],
            buckets=INFERENCE_BUCKETS_S,
            registry=self.registry,
        )
        self.model_releases = Counter(
            "vigil_model_releases",
            "Times the idle model and its buffers were released (reloaded with the next frame)",
            ["model"],
            registry=self.registry,
        )
        self.lease_outages = Counter(
            "vigil_detector_lease_outages",
            "Times this replica could not keep its source leases (the database out of reach),"
            " counted once per outage",
            registry=self.registry,
        )

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)


class ReviewCollector(Collector):
    """Incidents, false alarms and reviews per source, class and watch rule, counted in the
    incident store when Prometheus scrapes.

    Gauges, not counters: a review may change its mind (a dismissal confirmed later), so false
    alarms and dismissals can go down, which a counter must never do; and counted from the store
    they are right after a restart, where counters kept in memory would start again from zero.
    The count reads one covering index (``incidents_stats``), so a scrape stays cheap.
    """

    def __init__(self, stats: Callable[[], Iterable[pb.IncidentStats]]) -> None:
        self.stats = stats

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["source", "class", "rule"]
        families = {
            "incidents": GaugeMetricFamily(
                "vigil_incidents_kept", "Incidents in the history", labels=labels
            ),
            "false_alarms": GaugeMetricFamily(
                "vigil_incidents_false_alarms",
                "Incidents dismissed by an operator, or rejected by the model and not confirmed",
                labels=labels,
            ),
            "confirmed": GaugeMetricFamily(
                "vigil_incidents_confirmed", "Incidents confirmed by an operator", labels=labels
            ),
            "dismissed": GaugeMetricFamily(
                "vigil_incidents_dismissed", "Incidents dismissed by an operator", labels=labels
            ),
            "rejected": GaugeMetricFamily(
                "vigil_incidents_rejected", "Incidents rejected by the model", labels=labels
            ),
            "false_alarm_rate": GaugeMetricFamily(
                "vigil_incidents_false_alarm_rate", "False alarms / incidents", labels=labels
            ),
        }
        try:
            rows = list(self.stats())
        except (RuntimeError, concurrent.futures.TimeoutError) as exc:
            # The store is closing, or too busy to answer within the scrape: no figures this time.
            log.warning("incident statistics not collected: %s", exc)
            rows = []
        for row in rows:
            value = [row.source_id, row.class_name, row.rule_id]
            for name, family in families.items():
                family.add_metric(value, float(getattr(row, name)))
        yield from families.values()


class WatchRuleCollector(Collector):
    """Per watch rule (``Source.watch_rules``): candidates, checks, yes answers, held-back
    candidates and model time; and the checks dropped because the analyzer fell behind."""

    def __init__(
        self, sources: Callable[[], Iterable[pb.Source]], dropped: Callable[[], int]
    ) -> None:
        self.sources = sources
        self.dropped = dropped

    def collect(self) -> Iterable[CounterMetricFamily]:
        labels = ["source", "rule"]
        families = {
            "candidates": CounterMetricFamily(
                "vigil_watch_rule_candidates",
                "Frames that passed the rule's pre-filter",
                labels=labels,
            ),
            "checks": CounterMetricFamily(
                "vigil_watch_rule_checks", "Model calls made for the rule", labels=labels
            ),
            "matches": CounterMetricFamily(
                "vigil_watch_rule_matches", "Checks the model answered yes", labels=labels
            ),
            "held_back": CounterMetricFamily(
                "vigil_watch_rule_held_back",
                "Candidates not checked: interval, budget or a full queue",
                labels=labels,
            ),
            "model_seconds": CounterMetricFamily(
                "vigil_watch_rule_model_seconds",
                "Seconds the model spent on the rule",
                labels=labels,
            ),
        }
        for source in self.sources():
            for status in source.watch_rules:
                value = [source.spec.id, status.rule_id]
                for name, family in families.items():
                    family.add_metric(value, getattr(status, name))
        yield from families.values()
        yield CounterMetricFamily(
            "vigil_watch_rule_checks_dropped",
            "Watch-rule checks dropped because the analyzer was behind",
            value=self.dropped(),
        )
