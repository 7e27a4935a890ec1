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

Benchmarks, the load generator and tests start services the same way (``command``, ``address``,
``started``), never by importing them: the library must not depend on the services it launches.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry

from vigil.core import ports
from vigil.core.metrics_http import serve_metrics
from vigil.supervisor import Policy, Supervisor, SupervisorCollector, describe_exit

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


def command(service: str) -> list[str]:
    """How a service (its package) is started: this interpreter, ``-m`` the package."""
    return [sys.executable, "-m", service]


def address(service: str, env: Mapping[str, str]) -> str:
    """Where a service started with ``env`` listens: ``host:port``, a URL for the bridge."""
    host = env.get(f"{PREFIXES[service]}HOST", "127.0.0.1")
    where = f"{host}:{env.get(f'{PREFIXES[service]}PORT', DEFAULT_PORTS[service])}"
    return f"http://{where}" if service == "bridge" else where


def service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment every service starts with: the bridge learns where the others listen."""
    env = dict(base)
    env.setdefault("VIGIL_BRIDGE_DETECTOR_ADDRESS", address("detector_service", env))
    env.setdefault("VIGIL_BRIDGE_ANALYZER_ADDRESS", address("analyzer_service", env))
    for service, metrics_port in DEFAULT_METRICS_PORTS.items():
        env.setdefault(f"{PREFIXES[service]}METRICS_PORT", str(metrics_port))
    # One VIGIL_TOKEN protects all three services; a service's own token variable wins.
    token = env.get("VIGIL_TOKEN")
    if token:
        for prefix in PREFIXES.values():
            env.setdefault(f"{prefix}TOKEN", token)
    # With a language model configured, the detector has it check weapon incidents as they open
    # (verified alerts); without one there is nothing to ask, and verification stays off.
    if env.get("VIGIL_ANALYZER_ENGINE", "none") != "none":
        env.setdefault("VIGIL_DETECTOR_ANALYZER_URL", address("analyzer_service", env))
        if "VIGIL_ANALYZER_TOKEN" in env:
            env.setdefault("VIGIL_DETECTOR_ANALYZER_TOKEN", env["VIGIL_ANALYZER_TOKEN"])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


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
    url = address("bridge", env)
    try:
        policy = Policy.from_env(env)
    except ValueError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    supervisor = Supervisor({NAMES[s]: command(s) for s in SERVICES}, env=env, policy=policy)
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


# --- Services for a benchmark, a load test or a test ----------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (bound and released): a service is told its port, and none
    reports back which one it bound when given 0."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def ready(service: str, where: str, timeout_s: float = 1.0) -> bool:
    """Whether a gRPC service reports SERVING (standard health), or the bridge answers /health."""
    if service == "bridge":
        try:
            with urllib.request.urlopen(f"{where}/health", timeout=timeout_s):
                return True
        except OSError:
            return False
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(where) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def pinned(cpu: int | None) -> list[str]:
    """The prefix that keeps a service (each thread it ever starts) on one CPU; none for None."""
    if cpu is None:
        return []
    path = shutil.which("taskset")
    if path is None:
        raise RuntimeError("pinning a service to one CPU needs taskset (Debian: util-linux)")
    return [path, "-c", str(cpu)]


@contextlib.contextmanager
def started(
    services: Sequence[str],
    env: Mapping[str, str],
    *,
    ready_timeout_s: float = 60.0,
    cpu: int | None = None,
) -> Iterator[dict[str, int]]:
    """``services`` (packages) started as ``vigil run`` starts them, configured by ``env`` (which
    names their ports), until each is ready; yields their pids by package. Nothing restarts here:
    a service that exits during start-up raises. Stopped with SIGTERM (SIGKILL after 15 s)."""
    supervisor = Supervisor(
        {s: [*pinned(cpu), *command(s)] for s in services},
        env={"PYTHONUNBUFFERED": "1", **env},
        policy=Policy(),  # never polled: what exits stays down
    )
    supervisor.start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        waiting = list(services)
        while waiting:
            for child in supervisor.children.values():
                if child.popen is not None and (code := child.popen.poll()) is not None:
                    raise RuntimeError(
                        f"{child.name} exited during start-up ({describe_exit(code)})"
                    )
            waiting = [s for s in waiting if not ready(s, address(s, env))]
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {ready_timeout_s:g} s: {', '.join(waiting)}")
            if waiting:
                time.sleep(POLL_S / 2)
        yield {name: child.popen.pid for name, child in supervisor.children.items() if child.popen}
    finally:
        supervisor.stop()
