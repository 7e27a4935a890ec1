"""Where Vigil's services listen by default: every default port and loopback address, once.

The services' settings, ``vigil run``, the CLI, the SDK and the load generator take their
defaults from here, so that moving a service's port is one edit.
"""

from __future__ import annotations

LOOPBACK = "127.0.0.1"

DETECTOR_PORT = 50051
ANALYZER_PORT = 50052
BRIDGE_PORT = 8000

# Prometheus metrics (``vigil run`` sets them; the bridge serves /metrics on its own port).
DETECTOR_METRICS_PORT = 9101
ANALYZER_METRICS_PORT = 9102
RUN_METRICS_PORT = 9103

DETECTOR_ADDRESS = f"{LOOPBACK}:{DETECTOR_PORT}"
ANALYZER_ADDRESS = f"{LOOPBACK}:{ANALYZER_PORT}"
BRIDGE_URL = f"http://{LOOPBACK}:{BRIDGE_PORT}"
