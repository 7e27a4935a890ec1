"""What a detector does differently as one of several replicas sharing a PostgreSQL database:
its incident gauges count only its own sources, it closes the incidents a dead replica left open
on a source it takes over, and it leaves other replicas' sources' retention to them. Kept apart
from ``server.py``, which wires these in only when a database is configured."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Awaitable, Callable

from detector_service.incidents.keeping import IncidentKeeping
from detector_service.incidents.postgres_store import PostgresIncidentStore
from detector_service.incidents.tracker import IncidentTracker
from detector_service.ownership import Ownership
from detector_service.sources import SourceRegistry
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger("detector_service")
# How long a metrics scrape waits for the incident store to count.
STATS_TIMEOUT_S = 5.0


def review_stats(
    store: IncidentKeeping, registry: SourceRegistry, ownership: Ownership | None
) -> list[pb.IncidentStats]:
    """The review gauges' rows. Replicas share one history, so each reports only the sources it
    runs: summed over the replicas, a gauge counts every running source once (a removed source's
    history, which no replica runs, is counted by none). Alone, every source in the history.
    Scrapes wait for the store's thread, behind any writes queued first: seconds at worst."""
    rows = store.stats().result(STATS_TIMEOUT_S)
    if ownership is None:
        return rows
    running = {s.spec.id for s in registry.all()}
    return [row for row in rows if row.source_id in running]


def close_left_open(incidents: IncidentTracker, source_id: str, at_ns: int) -> None:
    """A source this replica starts running may have incidents its last replica left open (it
    died): closed at ``at_ns`` and their CLOSED events streamed, here and on the other replicas."""
    store = incidents.store
    if not isinstance(store, PostgresIncidentStore):
        return

    def closed(future: concurrent.futures.Future[list[pb.Incident]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return  # logged by the store
        for incident in future.result():
            log.info("incident %s left open on %s: closed", incident.id, source_id)
            incidents.closed_elsewhere(incident)

    store.close_left_open(source_id, at_ns).add_done_callback(closed)


def run_elsewhere(ownership: Ownership) -> Callable[[], Awaitable[frozenset[str]]]:
    """The sources other replicas run (or are taking over) now: their retention is theirs."""

    async def elsewhere() -> frozenset[str]:
        owners = await ownership.owners()
        return frozenset(
            source_id
            for source_id, owner in owners.items()
            if owner is None or owner.replica != ownership.replica
        )

    return elsewhere
