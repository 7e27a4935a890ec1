"""``vigil run`` as a real process for the launcher tests: its output, its services, its metrics.

The launcher runs in its own process group with a clean ``VIGIL_*`` environment, free ports for
every service and every metrics endpoint, and its working directory in the test's folder (the
services read a ``.env`` from there). ``close`` kills the whole group whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
LABEL = re.compile(r'(\w+)="([^"]*)"')
MODULES = {"detector_service": "detector", "analyzer_service": "analyzer", "bridge": "bridge"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as response:
        body: bytes = response.read()
        return body


class Launcher:
    def __init__(self, workdir: pathlib.Path, **settings: str) -> None:
        self.ports = {
            "bridge": free_port(),
            "detector_metrics": free_port(),
            "analyzer_metrics": free_port(),
            "run_metrics": free_port(),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env.update(
            VIGIL_DETECTOR_PORT=str(free_port()),
            VIGIL_DETECTOR_DATA_DIR=str(workdir / "detector"),
            VIGIL_DETECTOR_METRICS_PORT=str(self.ports["detector_metrics"]),
            VIGIL_ANALYZER_PORT=str(free_port()),
            VIGIL_ANALYZER_DATA_DIR=str(workdir / "analyzer"),
            VIGIL_ANALYZER_METRICS_PORT=str(self.ports["analyzer_metrics"]),
            VIGIL_BRIDGE_PORT=str(self.ports["bridge"]),
            VIGIL_RUN_METRICS_PORT=str(self.ports["run_metrics"]),
        )
        env.update(settings)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigil.cli", "run"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # Read the output as it comes, so the pipe never fills and a test can wait for a line.
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.proc.stdout or []), daemon=True
        )
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['bridge']}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def eventually(self, probe: Callable[[], T | None], within_s: float, what: str) -> T:
        deadline = time.monotonic() + within_s
        while True:
            with contextlib.suppress(OSError, ValueError):
                if (value := probe()) is not None and value is not False:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within_s:g} s: {what}\n{self.output}")
            time.sleep(0.2)

    def services(self) -> dict[str, int]:
        """The launcher's service processes now: name -> pid (from /proc)."""
        found = {}
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != self.proc.pid or b"-m" not in argv:
                continue
            module = argv[argv.index(b"-m") + 1].decode()
            if module in MODULES and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found[MODULES[module]] = int(entry.name)
        return found

    def health(self) -> dict[str, str]:
        services: dict[str, str] = json.loads(http_get(f"{self.url}/health"))["services"]
        return services

    def all_serving(self) -> bool:
        return set(self.health().values()) == {"SERVING"}

    def metric(self, port_name: str, name: str, **labels: str) -> float | None:
        """One sample of ``name`` with exactly these labels from a metrics endpoint, or None."""
        url = (
            f"{self.url}/metrics"
            if port_name == "bridge"
            else f"http://127.0.0.1:{self.ports[port_name]}/metrics"
        )
        for line in http_get(url).decode().splitlines():
            match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
            if match and match[1] == name and dict(LABEL.findall(match[2] or "")) == labels:
                return float(match[3])
        return None

    def state(self, service: str) -> str | None:
        for state in ("running", "backoff", "failed", "stopped"):
            if self.metric("run_metrics", "vigil_service_state", service=service, state=state):
                return state
        return None

    def stop(self) -> int:
        """SIGTERM to the launcher alone, as an operator (or systemd, or CI) sends it."""
        self.proc.send_signal(signal.SIGTERM)
        returncode = self.proc.wait(timeout=60)
        self._reader.join(timeout=5)
        return returncode

    def leftovers(self) -> list[int]:
        """Processes still in the launcher's process group (its services and their children)."""
        left = []
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                        left.append(int(entry.name))
        return left

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
