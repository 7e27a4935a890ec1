"""Helpers of the fault tests: Vigil's services as real subprocesses, and ways to watch them.

``Services`` is an async context manager that starts the detector, the analyzer and the bridge
as ``vigil run`` does (``vigil.launcher``: the same command, readiness as it judges it) on free
127.0.0.1 ports, each in its own process group with its own log file, and kills every group it
started on the way out, whatever the test did to them (stopped processes are continued first so
SIGKILL lands).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import grpc
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect

from vigil import launcher
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.detector.v1 import detector_service_pb2 as dpb

REPO = pathlib.Path(__file__).resolve().parents[2]
DETECTOR_SERVICE = dpb.DESCRIPTOR.services_by_name["DetectorService"].full_name
ANALYZER_SERVICE = apb.DESCRIPTOR.services_by_name["AnalyzerService"].full_name
# Seconds a service may take to come up (imports dominate: cv2, onnxruntime, grpc).
START_TIMEOUT_S = 40.0

T = TypeVar("T")


class ProcessDied(AssertionError):
    """A service exited while a test waited on it; ``eventually`` gives up at once."""


def _clean_environ() -> dict[str, str]:
    # The developer's own VIGIL_* settings must not leak into the services under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.pop("ROBOFLOW_API_KEY", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServiceProcess:
    """One service run as ``python -m <module>``; it may be killed and started again (same port,
    same environment, a fresh log file per start)."""

    name: str
    module: str
    env: dict[str, str]
    port: int
    workdir: pathlib.Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[pathlib.Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        self.starts += 1
        log = self.workdir / f"{self.name}-{self.starts}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            # Its own session (process group): cleanup can kill it and every child it made.
            self.popen = subprocess.Popen(
                launcher.command(self.module),
                env=self.env,
                # Not the repository: the services read a `.env` from their working directory.
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the service process itself (not its children)."""
        assert self.popen is not None
        self.popen.send_signal(sig)

    async def wait_exit(self, within_s: float) -> int:
        """The exit status, waiting at most ``within_s`` seconds (raises TimeoutError)."""
        assert self.popen is not None
        popen = self.popen
        deadline = time.monotonic() + within_s
        while (rc := popen.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still running after {within_s:g} s")
            await asyncio.sleep(0.02)
        return rc

    def children(self) -> list[int]:
        """Pids of the service's direct children (media workers), from /proc."""
        if not self.alive():
            return []
        found = []
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised command, which may hold spaces) is the parent pid.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.pid:
                found.append(int(entry.name))
        return found

    def kill_group(self) -> None:
        """SIGKILL the whole process group (continued first, in case it was stopped)."""
        if self.popen is None:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def log(self, last: int = 4000) -> str:
        """The tail of every log of this service, for assertion messages."""
        parts = []
        for path in self.logs:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name} ---\n{text[-last:]}")
        return "\n".join(parts)


class Services:
    """Starts services as subprocesses; ``async with`` guarantees they are all gone after."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.started: list[ServiceProcess] = []

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.started:
            proc.kill_group()

    def _spawn(self, name: str, module: str, port: int, env: dict[str, str]) -> ServiceProcess:
        full = _clean_environ()
        full.update(env)
        proc = ServiceProcess(name, module, full, port, self.workdir)
        self.started.append(proc)
        proc.start()
        return proc

    def detector(self, *, port: int | None = None, **env: str) -> ServiceProcess:
        """A detector without a model (backend none): frames pass through undetected."""
        port = port or launcher.free_port()
        settings = {
            "VIGIL_DETECTOR_PORT": str(port),
            "VIGIL_DETECTOR_BACKEND": "none",
            "VIGIL_DETECTOR_DATA_DIR": str(self.workdir / "detector"),
            "VIGIL_DETECTOR_MAX_FPS": "10",
            "VIGIL_DETECTOR_GRACE_S": "3",
        }
        settings.update(env)
        return self._spawn("detector", "detector_service", port, settings)

    def analyzer(
        self, *, port: int | None = None, detector: str | None = None, **env: str
    ) -> ServiceProcess:
        """An analyzer without a language model; without ``detector`` the detection pass is off."""
        port = port or launcher.free_port()
        settings = {
            "VIGIL_ANALYZER_PORT": str(port),
            "VIGIL_ANALYZER_DATA_DIR": str(self.workdir / "analyzer"),
            "VIGIL_ANALYZER_GRACE_S": "3",
            "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
        }
        if detector is None:
            settings["VIGIL_ANALYZER_DETECTION_PASS"] = "false"
        else:
            settings["VIGIL_ANALYZER_DETECTOR_ADDRESS"] = detector
        settings.update(env)
        return self._spawn("analyzer", "analyzer_service", port, settings)

    def bridge(
        self,
        *,
        detector: str | None = None,
        analyzer: str | None = None,
        port: int | None = None,
        **env: str,
    ) -> ServiceProcess:
        """A bridge with its production defaults (retries, keepalive) unless ``env`` says."""
        port = port or launcher.free_port()
        settings = {
            "VIGIL_BRIDGE_PORT": str(port),
            # Backends not given point at ports where nothing listens.
            "VIGIL_BRIDGE_DETECTOR_ADDRESS": detector or f"127.0.0.1:{launcher.free_port()}",
            "VIGIL_BRIDGE_ANALYZER_ADDRESS": analyzer or f"127.0.0.1:{launcher.free_port()}",
        }
        settings.update(env)
        return self._spawn("bridge", "bridge", port, settings)


# --- waiting --------------------------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    within_s: float,
    what: str,
    *,
    interval: float = 0.1,
    log: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``probe`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + within_s
    last_error: BaseException | None = None
    while True:
        try:
            value = await probe()
        except ProcessDied:
            raise
        except Exception as e:  # a probe may fail while the service is down
            last_error, value = e, None
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:g} s: {what} ({last_error!r})\n{log()}")
        await asyncio.sleep(interval)


async def health_status(address: str, service: str = "", deadline_s: float = 1.0) -> str:
    """The standard gRPC health of ``service`` at ``address``; UNREACHABLE when no answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=deadline_s
            )
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


async def wait_ready(proc: ServiceProcess, within_s: float = START_TIMEOUT_S) -> None:
    """Until the service is ready as ``vigil run`` judges it (gRPC health SERVING, the bridge
    answering /health); fails early if the process died."""

    async def up() -> bool:
        if not proc.alive():
            raise ProcessDied(f"{proc.name} exited during start-up\n{proc.log()}")
        where = launcher.address(proc.module, proc.env)  # a URL for the bridge
        return await asyncio.to_thread(launcher.ready, proc.module, where, 0.5)

    await eventually(up, within_s, f"{proc.name} ready", interval=0.1, log=proc.log)


# --- viewers --------------------------------------------------------------------------------


@dataclass
class Message:
    at: float  # time.monotonic() on arrival
    data: dict[str, Any]


class Viewer:
    """A WebSocket viewer of ``/ws/video-stream[/source]`` that records every message it gets
    (frames reduced to their type and timestamp) in a background task."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[Message] = []
        self.closed_at: float | None = None
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                data = orjson.loads(raw)
                data.pop("data", None)  # the JPEG: not needed, and large
                self.messages.append(Message(time.monotonic(), data))
        except Exception:
            pass
        finally:
            self.closed_at = time.monotonic()

    def frames_after(self, since: float) -> list[Message]:
        return [m for m in self.messages if m.at > since and m.data.get("type") == "frame"]

    def errors_after(self, since: float) -> list[Message]:
        return [m for m in self.messages if m.at > since and m.data.get("type") == "error"]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


@contextlib.asynccontextmanager
async def viewer(bridge: ServiceProcess, path: str = "/ws/video-stream") -> AsyncIterator[Viewer]:
    ws = await connect(f"ws://127.0.0.1:{bridge.port}{path}", max_size=None)
    view = Viewer(ws)
    try:
        yield view
    finally:
        await view.close()
