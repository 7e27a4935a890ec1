"""``vigil loadtest``: generated gRPC and WebSocket clients against running (or spawned) services.

A scenario mixes Detect streams, Subscribe streams, WebSocket viewers through the bridge (some
deliberately slow) and analysis-plus-chat workers, for a bounded time against loopback addresses
unless told otherwise. The report gives throughput, capture-to-receipt latency, drops per viewer
class, errors by code, each service's resource use, and the services' own counters to check the
clients' figures against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vigil.loadgen.scenario import Scenario, ScenarioError

if TYPE_CHECKING:
    from vigil.loadgen.runner import run_scenario

__all__ = ["Scenario", "ScenarioError", "run_scenario"]


def __getattr__(name: str) -> Any:
    # The runner needs OpenCV and websockets (the `loadtest` extra); `vigil --help` reads the
    # scenario's limits from here and must work on the base install.
    if name == "run_scenario":
        from vigil.loadgen.runner import run_scenario

        return run_scenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
