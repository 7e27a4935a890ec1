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
