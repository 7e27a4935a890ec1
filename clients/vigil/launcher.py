"""``vigil run``: start the detector, the analyzer and the bridge, and stop them together.

Each service runs as its own process (``python -m <package>``) configured by its environment
variables; the bridge is pointed at the two gRPC services. The launcher waits until the bridge's
``/health`` reports every service SERVING, prints the URL, and on SIGINT or SIGTERM (or when any
service dies) stops all of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping

SERVICES = ("detector_service", "analyzer_service", "bridge")
DEFAULT_PORTS = {"detector_service": 50051, "analyzer_service": 50052, "bridge": 8000}
PREFIXES = {
    "detector_service": "VIGIL_DETECTOR_",
    "analyzer_service": "VIGIL_ANALYZER_",
    "bridge": "VIGIL_BRIDGE_",
}


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


def run(ready_timeout_s: float = 180.0) -> int:
    env = service_env(os.environ)
    url = bridge_url(env)
    procs = {name: subprocess.Popen([sys.executable, "-m", name], env=env) for name in SERVICES}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = False
    deadline = time.monotonic() + ready_timeout_s
    exit_code = 0
    try:
        while not stopping:
            dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            if dead:
                print(f"vigil: service exited: {dead}; stopping the others", file=sys.stderr)
                exit_code = 1
                break
            if not ready:
                report = health(url)
                if all_serving(report):
                    ready = True
                    print(f"vigil: all services up. Open {url}/", flush=True)
                    print(f"vigil: health {json.dumps(report)}", flush=True)
                elif time.monotonic() > deadline:
                    print(
                        f"vigil: services not healthy after {ready_timeout_s:.0f} s: {report}",
                        file=sys.stderr,
                    )
                    exit_code = 1
                    break
            time.sleep(0.5)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return exit_code
