"""One client over two real detectors behind one ``ipv4:`` target: the path ``dns:///`` targets
take too (round robin, client-side health checking, retries)."""

from __future__ import annotations

import time

import pytest

from detector_service.server import DetectorServer
from tests.vigil.conftest import LoopThread, StartDetector
from vigil.core.errors import NotFound, Unavailable
from vigil.sdk import ClientOptions, DetectorClient

# Bounds on waiting for the client to see a health change; it normally takes milliseconds.
SETTLE_S = 10.0


class Replicas:
    """Two detectors, one client over both, and a direct client for each to see where calls
    landed: every ``add`` makes a source on exactly the replica that took the call."""

    def __init__(self, one: DetectorServer, two: DetectorServer) -> None:
        self.servers = (one, two)
        self.client = DetectorClient(f"ipv4:127.0.0.1:{one.port},127.0.0.1:{two.port}")
        # Not health-checked: they must reach a replica that is NOT_SERVING; not retried: one that
        # is gone fails at once.
        self.direct = [
            DetectorClient(ClientOptions(f"127.0.0.1:{s.port}", health_checked=False, retry=None))
            for s in self.servers
        ]
        self.added = 0

    def add(self) -> int:
        """Add a source through the shared client; the index of the replica that holds it."""
        source_id = f"cam-{self.added}"
        self.added += 1
        self.client.add_source(source_id, "test_pattern")
        holders = []
        for index, direct in enumerate(self.direct):
            try:
                direct.get_source(source_id)
            except (NotFound, Unavailable):  # not there, or the replica is gone
                continue
            holders.append(index)
        assert len(holders) == 1, f"{source_id} is on replicas {holders}"
        return holders[0]

    def until(self, index: int, in_a_row: int) -> None:
        """Add sources until ``in_a_row`` in a row land on replica ``index``."""
        deadline = time.monotonic() + SETTLE_S
        streak = 0
        while streak < in_a_row:
            assert time.monotonic() < deadline, f"calls do not reach replica {index}"
            streak = streak + 1 if self.add() == index else 0

    def close(self) -> None:
        for client in (self.client, *self.direct):
            client.close()


def test_calls_spread_and_avoid_a_replica_not_serving(
    start_detector: StartDetector, loop_thread: LoopThread
) -> None:
    one, two = start_detector(), start_detector()
    replicas = Replicas(one, two)
    try:
        # Round robin: sequential calls alternate once both replicas are connected (the first
        # few may all go to the one that connected first).
        landed = [replicas.add() for _ in range(20)]
        assert landed.count(0) >= 5, landed
        assert landed.count(1) >= 5, landed

        # A replica turning NOT_SERVING gets no new calls, yet still answers its health.
        loop_thread.run(one.service.set_serving(False))
        replicas.until(1, in_a_row=5)
        assert [replicas.add() for _ in range(10)] == [1] * 10
        assert replicas.client.health() in ("SERVING", "NOT_SERVING")
        assert replicas.direct[0].health() == "NOT_SERVING"
        # A health-checked client of that replica alone has nowhere to send calls.
        lone = f"ipv4:127.0.0.1:{one.port}"
        with DetectorClient(lone) as alone:
            assert alone.health() == "NOT_SERVING"
            with pytest.raises(Unavailable, match="unhealthy"):
                alone.list_sources(timeout_s=2)
        # A plain host:port (the single box) is not health-checked unless asked: its answers
        # still come, as they did before replicas.
        with DetectorClient(f"127.0.0.1:{one.port}") as single:
            assert "default" in [s.id for s in single.list_sources(timeout_s=5)]
        asked = ClientOptions(f"127.0.0.1:{one.port}", health_checked=True)
        with DetectorClient(asked) as checked, pytest.raises(Unavailable, match="unhealthy"):
            checked.list_sources(timeout_s=2)

        # Back to SERVING: it takes calls again.
        loop_thread.run(one.service.set_serving(True))
        replicas.until(0, in_a_row=1)
    finally:
        replicas.close()


def test_calls_keep_succeeding_when_a_replica_stops(
    start_detector: StartDetector, loop_thread: LoopThread
) -> None:
    one, two = start_detector(), start_detector()
    replicas = Replicas(one, two)
    try:
        landed = [replicas.add() for _ in range(20)]
        assert set(landed) == {0, 1}
        # Its gRPC server goes away without turning NOT_SERVING first, as when it crashes.
        loop_thread.run(one.service.server.stop(0))
        for _ in range(20):
            assert "default" in [s.id for s in replicas.client.list_sources()]
        assert {replicas.add() for _ in range(10)} == {1}
    finally:
        replicas.close()
