"""Start the services for a load test or a benchmark, on free loopback ports.

``processes`` runs each service as its own ``python -m`` process (the deployed shape, and /proc
then tells each one's resource use apart); ``in_process`` runs them on an event loop in a thread of
this process, which starts in a fraction of the time and suits tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
SERVICES = ("detector", "analyzer", "bridge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclasses.dataclass
class Services:
    detector: str
    analyzer: str
    bridge: str
    # Service name -> pid whose /proc entry holds its resource use (this process when in-process).
    pids: dict[str, int]
    in_process: bool


class LoopThread:
    """An event loop in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="services")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def bridge_overrides(viewers: int) -> dict[str, Any]:
    # Every load-test viewer comes from 127.0.0.1: the per-address cap must not refuse them.
    return {"max_connections_per_client": max(32, viewers + 16), "log_level": "WARNING"}


@contextlib.contextmanager
def in_process(
    services: tuple[str, ...] = SERVICES,
    *,
    viewers: int = 0,
    detector: dict[str, Any] | None = None,
    analyzer: dict[str, Any] | None = None,
    bridge: dict[str, Any] | None = None,
) -> Iterator[Services]:
    import uvicorn

    from analyzer_service.server import serve as serve_analyzer
    from analyzer_service.settings import AnalyzerSettings
    from bridge.app import create_app
    from bridge.server import config, listen
    from bridge.settings import BridgeSettings
    from detector_service.server import serve as serve_detector
    from detector_service.settings import DetectorSettings

    loop = LoopThread()
    stops: list[Callable[[], Coroutine[Any, Any, None]]] = []
    addresses = dict.fromkeys(SERVICES, "")
    with tempfile.TemporaryDirectory(prefix="vigil-loadgen-") as tmp:
        root = pathlib.Path(tmp)
        try:
            if "detector" in services:
                fields: dict[str, Any] = {"port": 0, "backend": "none", "linger_s": 0.5}
                fields |= {"data_dir": root / "detector", **(detector or {})}
                det = loop.run(serve_detector(DetectorSettings(**fields)))
                stops.append(lambda: det.stop(0))
                addresses["detector"] = f"127.0.0.1:{det.port}"
            if "analyzer" in services:
                fields = {"port": 0, "data_dir": root / "analyzer", "media_workers": 1}
                # An engine object (the chat benchmark's) rides along with the settings.
                fields |= {"detector_address": addresses["detector"] or "127.0.0.1:1"}
                fields |= analyzer or {}
                engine = fields.pop("engine_instance", None)
                ana = loop.run(serve_analyzer(AnalyzerSettings(**fields), engine=engine))
                stops.append(lambda: ana.stop(0))
                addresses["analyzer"] = f"127.0.0.1:{ana.port}"
            if "bridge" in services:
                settings = BridgeSettings(
                    port=0,
                    detector_address=addresses["detector"] or "127.0.0.1:1",
                    analyzer_address=addresses["analyzer"] or "127.0.0.1:1",
                    **{**bridge_overrides(viewers), **(bridge or {})},
                )
                sock = listen(settings)
                server = uvicorn.Server(
                    config(
                        create_app(settings),
                        settings,
                        loop="none",
                        log_level="warning",
                        timeout_graceful_shutdown=2,
                    )
                )

                async def start_bridge() -> asyncio.Task[None]:
                    return asyncio.create_task(server.serve(sockets=[sock]))

                task = loop.run(start_bridge())
                deadline = time.monotonic() + 15
                while not server.started:
                    if task.done():
                        raise RuntimeError("the bridge exited during start-up")
                    if time.monotonic() > deadline:
                        raise RuntimeError("the bridge did not start within 15 s")
                    time.sleep(0.01)

                async def stop_bridge() -> None:
                    server.should_exit = True
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, 10)

                stops.append(stop_bridge)
                addresses["bridge"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
            pid = os.getpid()
            yield Services(
                addresses["detector"],
                addresses["analyzer"],
                addresses["bridge"],
                {"in-process": pid},
                True,
            )
        finally:
            for stop in reversed(stops):
                with contextlib.suppress(Exception):
                    loop.run(stop(), timeout=30)
            loop.close()


def _wait_grpc(address: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"service at {address} exited with {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"service at {address} not serving in time")
            time.sleep(0.1)


def _wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge at {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"bridge at {url} not answering in time")
        time.sleep(0.1)


def _taskset() -> str:
    path = shutil.which("taskset")
    if path is None:
        raise RuntimeError("pinning a service to one CPU needs taskset (Debian: util-linux)")
    return path


@contextlib.contextmanager
def processes(
    services: tuple[str, ...] = SERVICES,
    *,
    viewers: int = 0,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 60.0,
    cpu: int | None = None,
) -> Iterator[Services]:
    """Each service as ``python -m PACKAGE`` with VIGIL_* settings; stopped with SIGTERM.

    ``cpu``: every service (each of its threads) runs on that one CPU only (through ``taskset``,
    so that the threads a service starts later inherit it).
    """
    pin = [] if cpu is None else [_taskset(), "-c", str(cpu)]
    ports = {name: free_port() for name in SERVICES}
    detector, analyzer = f"127.0.0.1:{ports['detector']}", f"127.0.0.1:{ports['analyzer']}"
    bridge = f"http://127.0.0.1:{ports['bridge']}"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-loadgen-") as tmp:
        base = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "VIGIL_DETECTOR_PORT": str(ports["detector"]),
            "VIGIL_DETECTOR_BACKEND": "none",
            "VIGIL_DETECTOR_DATA_DIR": f"{tmp}/detector",
            "VIGIL_DETECTOR_LOG_LEVEL": "WARNING",
            "VIGIL_DETECTOR_LINGER_S": "0.5",
            # A load test's streams are not worth waiting for at shutdown.
            "VIGIL_DETECTOR_GRACE_S": "0.5",
            "VIGIL_ANALYZER_GRACE_S": "0.5",
            "VIGIL_ANALYZER_PORT": str(ports["analyzer"]),
            "VIGIL_ANALYZER_DATA_DIR": f"{tmp}/analyzer",
            "VIGIL_ANALYZER_DETECTOR_ADDRESS": detector,
            "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
            "VIGIL_ANALYZER_LOG_LEVEL": "WARNING",
            "VIGIL_BRIDGE_PORT": str(ports["bridge"]),
            "VIGIL_BRIDGE_DETECTOR_ADDRESS": detector,
            "VIGIL_BRIDGE_ANALYZER_ADDRESS": analyzer,
        }
        for key, value in bridge_overrides(viewers).items():
            base[f"VIGIL_BRIDGE_{key.upper()}"] = str(value)
        base.update(env or {})
        modules = {"detector": "detector_service", "analyzer": "analyzer_service"}
        modules["bridge"] = "bridge"
        try:
            for name in services:
                command = [*pin, sys.executable, "-m", modules[name]]
                procs[name] = subprocess.Popen(command, env=base)
            deadline = time.monotonic() + ready_timeout_s
            for name, proc in procs.items():
                if name == "bridge":
                    _wait_http(bridge, proc, deadline)
                else:
                    _wait_grpc(detector if name == "detector" else analyzer, proc, deadline)
            yield Services(
                detector if "detector" in services else "",
                analyzer if "analyzer" in services else "",
                bridge if "bridge" in services else "",
                {name: proc.pid for name, proc in procs.items()},
                False,
            )
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
