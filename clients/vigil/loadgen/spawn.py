"""Start the services for a load test or a benchmark, on free loopback ports.

Each service runs as its own process, started by ``vigil.launcher`` as ``vigil run`` starts it
(the deployed shape, and /proc then tells each one's resource use apart), configured by
``VIGIL_*`` settings: no model, short grace periods, a temporary data directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator

from vigil import launcher

SERVICES = ("detector", "analyzer", "bridge")
PACKAGES = {name: package for package, name in launcher.NAMES.items()}


@dataclasses.dataclass
class Services:
    detector: str
    analyzer: str
    bridge: str
    # Service name -> pid whose /proc entry holds its resource use.
    pids: dict[str, int]


def bridge_settings(viewers: int) -> dict[str, str]:
    # Every load-test viewer comes from 127.0.0.1: the per-address cap must not refuse them.
    return {
        "VIGIL_BRIDGE_MAX_CONNECTIONS_PER_CLIENT": str(max(32, viewers + 16)),
        "VIGIL_BRIDGE_LOG_LEVEL": "WARNING",
    }


def environment(data_dir: str, viewers: int) -> dict[str, str]:
    """The settings of all three services on free ports, each pointed at the others."""
    ports = {name: launcher.free_port() for name in SERVICES}
    detector, analyzer = f"127.0.0.1:{ports['detector']}", f"127.0.0.1:{ports['analyzer']}"
    # The caller's own VIGIL_* settings (a model, a backend) apply unless the test needs its own.
    return {
        **os.environ,
        "VIGIL_DETECTOR_PORT": str(ports["detector"]),
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_DATA_DIR": f"{data_dir}/detector",
        "VIGIL_DETECTOR_LOG_LEVEL": "WARNING",
        "VIGIL_DETECTOR_LINGER_S": "0.5",
        # A load test's streams are not worth waiting for at shutdown.
        "VIGIL_DETECTOR_GRACE_S": "0.5",
        "VIGIL_ANALYZER_GRACE_S": "0.5",
        "VIGIL_ANALYZER_PORT": str(ports["analyzer"]),
        "VIGIL_ANALYZER_DATA_DIR": f"{data_dir}/analyzer",
        "VIGIL_ANALYZER_DETECTOR_ADDRESS": detector,
        "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
        "VIGIL_ANALYZER_LOG_LEVEL": "WARNING",
        "VIGIL_BRIDGE_PORT": str(ports["bridge"]),
        "VIGIL_BRIDGE_DETECTOR_ADDRESS": detector,
        "VIGIL_BRIDGE_ANALYZER_ADDRESS": analyzer,
        **bridge_settings(viewers),
    }


@contextlib.contextmanager
def processes(
    services: tuple[str, ...] = SERVICES,
    *,
    viewers: int = 0,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 60.0,
    cpu: int | None = None,
) -> Iterator[Services]:
    """``services`` (of detector, analyzer, bridge) until each is ready; stopped with SIGTERM.

    ``env`` overrides the settings; ``cpu``: every service (each of its threads) runs on that one
    CPU only.
    """
    with tempfile.TemporaryDirectory(prefix="vigil-loadgen-") as tmp:
        settings = {**environment(tmp, viewers), **(env or {})}
        packages = [PACKAGES[name] for name in services]
        with launcher.started(packages, settings, ready_timeout_s=ready_timeout_s, cpu=cpu) as pids:
            where = {name: launcher.address(PACKAGES[name], settings) for name in services}
            yield Services(
                where.get("detector", ""),
                where.get("analyzer", ""),
                where.get("bridge", ""),
                {launcher.NAMES[package]: pid for package, pid in pids.items()},
            )
