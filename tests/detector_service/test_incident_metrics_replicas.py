"""Incident gauges across detector replicas on one PostgreSQL database: each replica reports only
the sources it runs, so a sum over the replicas' scrapes counts every incident once."""

from __future__ import annotations

import collections

from detector_service.server import DetectorServer
from tests.detector_service.replicas import (
    SOURCES,
    Replicas,
    add_sources,
    running,
    split,
    until,
)
from tests.detector_service.test_incident_replicas import open_incident
from vigil.sdk import AsyncDetectorClient


def kept(server: DetectorServer) -> collections.Counter[str]:
    """``vigil_incidents_kept`` of one scrape of ``server``, per source."""
    found: collections.Counter[str] = collections.Counter()
    for family in server.metrics.registry.collect():
        if family.name == "vigil_incidents_kept":
            for sample in family.samples:
                found[sample.labels["source"]] += int(sample.value)
    return found


async def test_summed_over_replicas_each_incident_is_counted_once(start: Replicas) -> None:
    a = await start("a")
    b = await start("b")
    async with AsyncDetectorClient(f"127.0.0.1:{a.port}") as client:
        await add_sources(client)
    await until(lambda: split(a, b), "sources split between a and b")
    everything = {"default", *SOURCES}
    for server in (a, b):
        for source_id in running(server):
            open_incident(server, source_id)

    def stored() -> bool:
        rows = a.incidents.store.stats().result(5)
        return sum(row.incidents for row in rows) == len(everything)

    await until(stored, "every incident stored")
    on_a, on_b = kept(a), kept(b)
    # Each replica: its own sources only (both run some), and every one of them.
    assert set(on_a) == running(a)
    assert set(on_b) == running(b)
    assert on_a + on_b == dict.fromkeys(everything, 1)
