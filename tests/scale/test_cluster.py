"""The launcher itself (``vigil.devtools.cluster``): every replica on loopback at a port of its own
with metrics apart from ``vigil run``'s defaults, the bridges on the replicas' ``ipv4:`` targets,
and nothing left running once the cluster is closed, a replica killed and restarted included."""

from __future__ import annotations

import os
import pathlib
import signal

from vigil.core import ports
from vigil.devtools.cluster import ClusterSpec, running_cluster
from vigil.devtools.postgres import PostgresServer
from vigil.devtools.redis_server import RedisServer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_cluster_runs_on_its_own_ports_and_leaves_nothing_behind(
    postgres: PostgresServer, redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    if redis_server.process is None:
        redis_server.start()
    url = postgres.create_database()
    spec = ClusterSpec(
        database_url=url,
        redis_url=redis_server.url,
        data_dir=tmp_path,
        detectors=1,
        analyzers=2,
        bridges=1,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'clients'}"},
    )
    try:
        with running_cluster(spec) as cluster:
            replicas = cluster.replicas
            assert [r.name for r in replicas] == [
                "detector-1",
                "analyzer-1",
                "analyzer-2",
                "bridge-1",
            ]
            used = [r.port for r in replicas] + [r.metrics_port for r in replicas if r.metrics_port]
            assert len(set(used)) == len(used)
            defaults = {ports.DETECTOR_METRICS_PORT, ports.ANALYZER_METRICS_PORT}
            assert not (defaults | {ports.RUN_METRICS_PORT}) & set(used)
            a1, a2 = cluster.analyzers
            assert cluster.analyzer_target == f"ipv4:127.0.0.1:{a1.port},127.0.0.1:{a2.port}"
            bridge = cluster.bridges[0]
            assert bridge.env["VIGIL_BRIDGE_ANALYZER_ADDRESS"] == cluster.analyzer_target
            assert bridge.env["VIGIL_BRIDGE_HOST"] == "127.0.0.1"
            # Killed and started again: the same name and port, serving again.
            assert a1.process is not None
            first = a1.process.pid
            a1.kill(signal.SIGKILL)
            assert not a1.ready()
            a1.start()
            cluster.wait_ready(120, [a1])
            assert a1.process.pid != first
            assert not alive(first)
            assert "analyzer listening on" in a1.log()
            pids = [r.process.pid for r in replicas if r.process is not None]
        assert len(pids) == len(replicas)
        assert not [pid for pid in pids if alive(pid)]
    finally:
        postgres.drop_database(url)
