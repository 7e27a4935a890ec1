"""Detector replicas: the sources of a SIGKILLed detector come back on the other (their leases
taken over, ListSources through the SDK's round-robin target showing them live there), and a
viewer watching one through a bridge receives frames again on the same connection."""

from __future__ import annotations

import dataclasses
import signal
import time

from websockets.asyncio.client import connect

from tests.scale.conftest import SOURCES
from tests.scale.helpers import frames, replica_at, rows, until
from vigil.core.errors import Unavailable
from vigil.devtools.cluster import Cluster
from vigil.sdk import DetectorClient, Source


def sources(cluster: Cluster) -> dict[str, Source]:
    """Every source as the replica running it reports it: ListSources through the round-robin
    target names the replica; GetSource, which the SDK follows to that replica, its live state."""
    with DetectorClient(cluster.detector_target) as client:
        listed = client.list_sources(timeout_s=10)
        return {
            s.id: dataclasses.replace(client.get_source(s.id, timeout_s=10), replica=s.replica)
            for s in listed
        }


def lease_owners(cluster: Cluster) -> dict[str, str | None]:
    held = rows(cluster.spec.database_url, "SELECT source_id, owner FROM detector_leases")
    return {str(source_id): owner for source_id, owner in held}


async def test_a_killed_detectors_sources_come_back_on_the_other_with_viewers(
    cluster: Cluster,
) -> None:
    def live_on_one_replica() -> bool:
        listed = sources(cluster)
        return all(listed[s].state == "live" and listed[s].replica for s in SOURCES)

    await until(live_on_one_replica, "the cluster's sources live")
    # The viewed source's replica is the one that dies; the bridge's viewer must ride it out.
    watched = SOURCES[0]
    victim = replica_at(cluster.detectors, sources(cluster)[watched].replica)
    survivor = next(r for r in cluster.detectors if r is not victim)
    ws_url = cluster.bridge_urls[0].replace("http://", "ws://")
    async with connect(f"{ws_url}/ws/video-stream/{watched}") as viewer:
        await frames(viewer, 3)
        killed_at = time.time()
        victim.kill(signal.SIGKILL)

        def all_on_survivor() -> bool:
            try:
                listed = sources(cluster)
            except Unavailable:
                return False  # still sent to the dead replica: its lease has not expired yet
            return all(
                listed[s].replica == survivor.address and listed[s].state == "live" for s in SOURCES
            )

        took = await until(all_on_survivor, f"every source live on {survivor.name}")
        # Frames captured after the kill reach the viewer that was watching when it happened.
        resumed = await frames(viewer, 3)
        while resumed[0] < killed_at:
            resumed = [*resumed[1:], *(await frames(viewer, 1))]
        print(f"\nsources taken over {took:.1f} s after SIGKILL; viewer resumed after "
              f"{time.time() - killed_at:.1f} s")  # fmt: skip
    owners = lease_owners(cluster)
    assert all(owners[s] == survivor.name for s in SOURCES), owners
    # Each source runs once: one replica lists it as its own.
    with DetectorClient(survivor.address) as client:
        listed = {s.id: s for s in client.list_sources(timeout_s=10)}
    assert all(listed[s].state == "live" for s in SOURCES)
    victim.start()
    cluster.wait_ready(120, [victim])
