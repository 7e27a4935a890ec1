"""``vigil loadtest``: generated gRPC and WebSocket clients against running (or spawned) services.

A scenario mixes Detect streams, Subscribe streams, WebSocket viewers through the bridge (some
deliberately slow) and analysis-plus-chat workers, for a bounded time against loopback addresses
unless told otherwise. The report gives throughput, capture-to-receipt latency, drops per viewer
class, errors by code, each service's resource use, and the services' own counters to check the
clients' figures against.
"""

from vigil.loadgen.runner import run_scenario
from vigil.loadgen.scenario import Scenario, ScenarioError

__all__ = ["Scenario", "ScenarioError", "run_scenario"]
