"""Benchmarks: ``vigil bench NAME [--json]``; ``make bench`` runs them all.

Each benchmark prints its figures and a headline ``ratio`` against a baseline measured in the same
run; with ``--json`` it prints one JSON object instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Benchmark = Callable[[dict[str, Any]], dict[str, Any]]
REGISTRY: dict[str, tuple[str, Callable[[], Benchmark]]] = {}


def register(
    name: str, summary: str
) -> Callable[[Callable[[], Benchmark]], Callable[[], Benchmark]]:
    def add(loader: Callable[[], Benchmark]) -> Callable[[], Benchmark]:
        REGISTRY[name] = (summary, loader)
        return loader

    return add


@register("pipeline", "detector pipeline cost per frame, per stage, and max fps on one core")
def _pipeline() -> Benchmark:
    from vigil.bench.pipeline import run

    return run


@register("transport", "frames/s detector -> bridge -> 1/10/50 viewers vs a bare websockets server")
def _transport() -> Benchmark:
    from vigil.bench.transport import run

    return run


@register("latency", "capture-to-viewer p50/p99 with 10 viewers, one throttled to 50 KB/s")
def _latency() -> Benchmark:
    from vigil.bench.latency import run

    return run


@register("sampling", "time to sample 32 frames from a 10-min and a 120-min 720p video")
def _sampling() -> Benchmark:
    from vigil.bench.sampling import run

    return run


@register("chat", "time to first token through the bridge vs the engine called directly")
def _chat() -> Benchmark:
    from vigil.bench.chat import run

    return run


@register("engine", "vLLM in process on a tiny Gemma 3: load, TTFT text vs 8 frames, tokens/s")
def _engine() -> Benchmark:
    from vigil.bench.engine import run

    return run


@register("sources", "720p sources one detector keeps at 15 fps (its configured backend, GPU too)")
def _sources() -> Benchmark:
    from vigil.bench.sources import run

    return run


@register("analysis", "wall time of a 120-minute 720p analysis with the configured engine")
def _analysis() -> Benchmark:
    from vigil.bench.analysis import run

    return run


@register(
    "always-on", "N always-on 720p RTSP cameras, motion-gated YOLO: CPU, memory, detection fps"
)
def _always_on() -> Benchmark:
    from vigil.bench.always_on import run

    return run


@register("soak", "all services under steady load (--duration, default 600 s); resources return")
def _soak() -> Benchmark:
    from vigil.bench.soak import run

    return run


@register("alert", "weapon in view -> OPENED and -> VERIFIED on a webhook, p50/p99, many sources")
def _alert() -> Benchmark:
    from vigil.bench.alert import run

    return run


@register(
    "scale", "one vs two replicas of each service: analyses/s, viewer fps; takeover after SIGKILL"
)
def _scale() -> Benchmark:
    from vigil.bench.scale import run

    return run
