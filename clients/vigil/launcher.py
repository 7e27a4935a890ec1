"""``vigil run``: start the detector, the analyzer and the bridge, keep them up, stop them together.

Each service runs as its own process (``python -m <package>``) configured by its environment
variables; the bridge is pointed at the two gRPC services, and each service's Prometheus metrics
get a port (detector 9101, analyzer 9102; the bridge serves ``/metrics`` itself). The launcher
waits until the bridge's ``/health`` reports every service SERVING and prints the URL. A service
that exits unexpectedly is restarted by ``vigil.supervisor`` (backoff, crash-loop limit) while the
others keep running; the restart counts are served on ``VIGIL_RUN_METRICS_PORT`` (9103).

SIGINT or SIGTERM stops every service, also one waiting in backoff. The exit status is 0 then,
or 1 when a service was given up on as a crash loop; the launcher also exits 1 (after stopping
everything) when every service has been given up on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

from vigil.core import ports
from vigil.core.metrics_http import serve_metrics
from vigil.supervisor import Policy, Supervisor, SupervisorCollector

SERVICES = ("detector_service", "analyzer_service", "bridge")
# The names logs, metrics and the bridge's /health use.
NAMES = {"detector_service": "detector", "analyzer_service": "analyzer", "bridge": "bridge"}
DEFAULT_PORTS = {
    "detector_service": ports.DETECTOR_PORT,
    "analyzer_service": ports.ANALYZER_PORT,
    "bridge": ports.BRIDGE_PORT,
}
PREFIXES = {
    "detector_service": "VIGIL_DETECTOR_",
    "analyzer_service": "VIGIL_ANALYZER_",
    "bridge": "VIGIL_BRIDGE_",
}
# Prometheus ports of the services that have no HTTP port of their own, and of the launcher.
DEFAULT_METRICS_PORTS = {
    "detector_service": ports.DETECTOR_METRICS_PORT,
    "analyzer_service": ports.ANALYZER_METRICS_PORT,
}
DEFAULT_RUN_METRICS_PORT = ports.RUN_METRICS_PORT
POLL_S = 0.2
HEALTH_EVERY_S = 0.5


def service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment every service starts with: the bridge learns where the others listen."""
    env = dict(base)
    host = {s: env.get(f"{PREFIXES[s]}HOST", "127.0.0.1") for s in SERVICES}
    port = {s: env.get(f"{PREFIXES[s]}PORT", str(DEFAULT_PORTS[s])) for s in SERVICES}
    env.setdefault(
        "VIGIL_BRIDGE_DETECTOR_ADDRESS", f"{host['detector_service']}:{port['detector_service']}"
    )
    env.setdefault(
        "VIGIL_BRIDGE_ANALYZER_ADDRESS", f"{host['analyzer_service']}:{port['analyzer_service']}"
    )
    for service, metrics_port in DEFAULT_METRICS_PORTS.items():
        env.setdefault(f"{PREFIXES[service]}METRICS_PORT", str(metrics_port))
    # One VIGIL_TOKEN protects all three services; a service's own token variable wins.
    token = env.get("VIGIL_TOKEN")
    if token:
        for prefix in PREFIXES.values():
            env.setdefault(f"{prefix}TOKEN", token)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def bridge_url(env: Mapping[str, str]) -> str:
    host = env.get("VIGIL_BRIDGE_HOST", "127.0.0.1")
    return f"http://{host}:{env.get('VIGIL_BRIDGE_PORT', DEFAULT_PORTS['bridge'])}"


def health(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            body: dict[str, object] = json.load(response)
            return body
    except (OSError, ValueError):
        return None


def all_serving(report: dict[str, object] | None) -> bool:
    services = report.get("services") if report else None
    return isinstance(services, dict) and all(v == "SERVING" for v in services.values())


def _serve_supervisor_metrics(
    supervisor: Supervisor, env: Mapping[str, str]
) -> tuple[int, Callable[[], None]]:
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(supervisor))
    port = int(env.get("VIGIL_RUN_METRICS_PORT", DEFAULT_RUN_METRICS_PORT))
    return serve_metrics(registry, env.get("VIGIL_RUN_METRICS_HOST", "127.0.0.1"), port)


def run(ready_timeout_s: float = 180.0) -> int:
    env = service_env(os.environ)
    url = bridge_url(env)
    try:
        policy = Policy.from_env(env)
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor(
        {NAMES[s]: [sys.executable, "-m", s] for s in SERVICES}, env=env, policy=policy
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        metrics_port, stop_metrics = _serve_supervisor_metrics(supervisor, env)
    except OSError as exc:
        print(f"vigil: cannot serve the launcher's metrics: {exc}", file=sys.stderr)
        return 1
    supervisor.start()
    print(f"vigil: restart counts at http://127.0.0.1:{metrics_port}/metrics", flush=True)
    ready = warned = False
    deadline = time.monotonic() + ready_timeout_s
    next_health = 0.0
    exit_code = 0
    try:
        while not stopping:
            supervisor.poll()
            if not supervisor.alive():
                print("vigil: every service has been given up on; stopping", file=sys.stderr)
                break
            now = time.monotonic()
            if not ready and now >= next_health:
                next_health = now + HEALTH_EVERY_S
                report = health(url)
                if all_serving(report):
                    ready = True
                    print(f"vigil: all services up. Open {url}/", flush=True)
                    print(f"vigil: health {json.dumps(report)}", flush=True)
                elif now > deadline and not warned:
                    # Not a reason to stop the services that are up: the operator decides.
                    warned = True
                    print(
                        f"vigil: services not healthy after {ready_timeout_s:.0f} s: {report}",
                        file=sys.stderr,
                    )
            time.sleep(POLL_S)
    finally:
        supervisor.stop()
        stop_metrics()
    if failed := supervisor.failed():
        print(f"vigil: given up on as crash loops: {', '.join(failed)}", file=sys.stderr)
        exit_code = 1
    return exit_code
