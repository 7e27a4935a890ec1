"""N replicas of each service as real processes on one PostgreSQL and one Redis: the multi-replica
tests and ``vigil bench scale`` start Vigil the way a site running it at scale does, on one host.

Every replica is ``python -m <package>`` configured by environment variables only (as ``vigil
run`` starts a service), bound to 127.0.0.1 on a free port, with its Prometheus metrics on a free
port of its own (never the defaults 9101-9103, which ``vigil run`` may hold). Detectors and
analyzers share the one database (sources, leases, jobs, events); the analyzers share one data
directory (the shared volume their media lives on); the bridges share Redis and reach the gRPC
replicas through ``ipv4:`` multi-address targets, round robin with health checking, exactly as
they reach ``dns:///`` targets in Kubernetes.

Kept cheap for a small machine: detectors run without a model (backend ``none``) and without
recording, analyzers without a language model unless vLLM URLs are given (``vllm-http``). Each
of those is an environment variable that ``ClusterSpec.env`` may set otherwise.

A replica is stopped or SIGKILLed on its own and started again under the same name and port, so
tests see its leases taken over and its return. The PostgreSQL and Redis servers are not started
here: ``vigil.devtools.postgres`` and ``vigil.devtools.redis_server`` do that.

Never imported by a service; it starts them as processes and imports none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from vigil.devtools.redis_server import free_port
from vigil.sdk import SourceSpec

SERVICES = ("detector", "analyzer", "bridge")
PACKAGES = {"detector": "detector_service", "analyzer": "analyzer_service", "bridge": "bridge"}
POLL_S = 0.1
STOP_S = 15.0
LOG_TAIL_CHARS = 8000


@dataclasses.dataclass
class ClusterSpec:
    database_url: str  # one PostgreSQL database shared by analyzers and detectors
    redis_url: str  # the bridges' Redis
    data_dir: pathlib.Path  # the shared volume: every replica's files under it
    detectors: int = 2
    analyzers: int = 2
    bridges: int = 2
    # Empty: the analyzers run engine "none"; else "vllm-http" spread over these servers.
    vllm_urls: tuple[str, ...] = ()
    # Added through the detectors once every replica is ready (kept in PostgreSQL, so a source
    # already there from an earlier cluster on the same database is left as it is).
    sources: tuple[SourceSpec, ...] = ()
    # Extra VIGIL_* (or any) variables for every process; they win over the cluster's own.
    env: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Replica:
    service: str  # "detector" | "analyzer" | "bridge"
    name: str  # replica id, e.g. "analyzer-1"
    port: int  # gRPC port (detector, analyzer) or HTTP port (bridge)
    process: subprocess.Popen[bytes] | None
    env: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    log_path: pathlib.Path = dataclasses.field(default=pathlib.Path(os.devnull), repr=False)
    # Where its Prometheus metrics are served (the bridge serves them on its own port).
    metrics_port: int = 0

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` (gRPC), or the bridge's URL."""
        where = f"127.0.0.1:{self.port}"
        return f"http://{where}" if self.service == "bridge" else where

    @property
    def metrics_url(self) -> str:
        port = self.port if self.service == "bridge" else self.metrics_port
        return f"http://127.0.0.1:{port}/metrics"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it (again) under the same name, port and environment; its log is appended to."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A session of its own: a Ctrl-C at the test's terminal does not reach it, and its
            # group is killed whole.
            self.process = subprocess.Popen(
                [sys.executable, "-m", PACKAGES[self.service]],
                env=self.env,
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to it (and to anything it started); waits for it to exit on SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        if sig == signal.SIGKILL:
            self.process.wait()

    def stop(self, timeout_s: float = STOP_S) -> None:
        """SIGTERM (the service drains), SIGKILL after ``timeout_s``; nothing of it left."""
        if self.process is None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
        # Whatever it started and left behind goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def ready(self) -> bool:
        """gRPC health SERVING (detector, analyzer), or the bridge's /health reporting every
        service SERVING through it."""
        if not self.running():
            return False
        if self.service == "bridge":
            return _all_serving(f"{self.address}/health")
        return _serving(self.address)

    def log(self) -> str:
        """The tail of its log (every run of it, appended)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def _all_serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            report = json.load(response)
    except (OSError, ValueError):
        return False
    services = report.get("services") if isinstance(report, dict) else None
    return isinstance(services, dict) and all(v == "SERVING" for v in services.values())


def _serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def target(replicas: list[Replica]) -> str:
    """The ``ipv4:`` target naming every replica: round robin over them in the SDK."""
    return "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)


class Cluster:
    """The replicas of one spec, each with its port chosen; nothing runs until ``start``."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.detectors = [self._replica("detector", i) for i in range(1, spec.detectors + 1)]
        self.analyzers = [self._replica("analyzer", i) for i in range(1, spec.analyzers + 1)]
        self.bridges = [self._replica("bridge", i) for i in range(1, spec.bridges + 1)]
        self.detector_target = target(self.detectors)
        self.analyzer_target = target(self.analyzers)
        self.bridge_urls = [b.address for b in self.bridges]
        for replica in self.replicas:
            replica.env = self._env(replica)

    @property
    def replicas(self) -> list[Replica]:
        return [*self.detectors, *self.analyzers, *self.bridges]

    @property
    def analyzer_data_dir(self) -> pathlib.Path:
        """The volume every analyzer keeps its videos and frames on."""
        return self.spec.data_dir / "analyzer"

    def _replica(self, service: str, index: int) -> Replica:
        name = f"{service}-{index}"
        return Replica(
            service=service,
            name=name,
            port=free_port(),
            process=None,
            log_path=self.spec.data_dir / "logs" / f"{name}.log",
            metrics_port=0 if service == "bridge" else free_port(),
        )

    def _env(self, replica: Replica) -> dict[str, str]:
        spec = self.spec
        prefix = f"VIGIL_{replica.service.upper()}_"
        own: dict[str, str] = {
            "HOST": "127.0.0.1",
            "PORT": str(replica.port),
        }
        if replica.service == "detector":
            own |= {
                "METRICS_PORT": str(replica.metrics_port),
                "DATA_DIR": str(spec.data_dir / replica.name),
                "DATABASE_URL": spec.database_url,
                "REPLICA_ID": replica.name,
                "ADVERTISE_ADDRESS": replica.address,
                "BACKEND": "none",
                "RECORDING": "false",
            }
        elif replica.service == "analyzer":
            own |= {
                "METRICS_PORT": str(replica.metrics_port),
                "DATA_DIR": str(self.analyzer_data_dir),
                "DATABASE_URL": spec.database_url,
                "REPLICA_ID": replica.name,
                "DETECTOR_ADDRESS": self.detector_target,
                "MEDIA_WORKERS": "1",
                "ENGINE": "vllm-http" if spec.vllm_urls else "none",
            }
            if spec.vllm_urls:
                own["VLLM_URL"] = ",".join(spec.vllm_urls)
        else:
            own |= {
                "DETECTOR_ADDRESS": self.detector_target,
                "ANALYZER_ADDRESS": self.analyzer_target,
                "REDIS_URL": spec.redis_url,
            }
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **{prefix + key: value for key, value in own.items()},
            **spec.env,
        }

    def start(self) -> None:
        """Start every replica (they come up in parallel); ``wait_ready`` waits for them."""
        (self.spec.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.analyzer_data_dir.mkdir(parents=True, exist_ok=True)
        for replica in self.replicas:
            replica.start()

    def wait_ready(self, timeout: float = 60.0, replicas: list[Replica] | None = None) -> None:
        """Until every replica (or those named) is ready; raises naming those that are not, with
        the tail of their logs, or at once when one has exited."""
        waiting = list(self.replicas if replicas is None else replicas)
        deadline = time.monotonic() + timeout
        while waiting:
            for replica in waiting:
                if replica.process is not None and (code := replica.process.poll()) is not None:
                    raise RuntimeError(f"{replica.name} exited ({code}):\n{replica.log()}")
            waiting = [r for r in waiting if not r.ready()]
            if waiting and time.monotonic() > deadline:
                logs = "\n".join(f"--- {r.name}\n{r.log()}" for r in waiting)
                names = ", ".join(r.name for r in waiting)
                raise RuntimeError(f"not ready within {timeout:g} s: {names}\n{logs}")
            if waiting:
                time.sleep(POLL_S)

    def add_sources(self, sources: tuple[SourceSpec, ...] | None = None) -> None:
        """Add ``sources`` (the spec's by default) through the detector target; one already kept
        is left as it is."""
        from vigil.core.errors import AlreadyExists
        from vigil.sdk import DetectorClient

        with DetectorClient(self.detector_target) as client:
            for source in self.spec.sources if sources is None else sources:
                with contextlib.suppress(AlreadyExists):
                    client.add_source_spec(source, timeout_s=30)

    def stop(self) -> None:
        """Stop every replica: SIGTERM to all at once, SIGKILL to any still up after a while."""
        for replica in self.replicas:
            replica.kill(signal.SIGTERM)
        deadline = time.monotonic() + STOP_S
        for replica in self.replicas:
            replica.stop(max(0.1, deadline - time.monotonic()))


@contextlib.contextmanager
def running_cluster(spec: ClusterSpec, *, ready_timeout_s: float = 120.0) -> Iterator[Cluster]:
    """Start every replica of ``spec``, wait until each is ready, add the spec's sources; stop
    them all (SIGTERM, then SIGKILL) on the way out, leaving no process behind."""
    cluster = Cluster(spec)
    try:
        cluster.start()
        cluster.wait_ready(ready_timeout_s)
        cluster.add_sources()
        yield cluster
    finally:
        cluster.stop()


def prometheus_values(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a Prometheus text exposition, keyed by their label set
    as written (``'{service="x"}'``, or ``''`` for none)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        labels = key[len(name) :]
        if labels and not labels.startswith("{"):
            continue  # another metric whose name starts with this one
        values[labels] = float(value)
    return values


def scrape(replica: Replica, name: str) -> dict[str, float]:
    """One metric's samples from a replica's Prometheus endpoint."""
    with urllib.request.urlopen(replica.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return prometheus_values(text, name)
