"""Which detector replica runs which source, when several share one PostgreSQL database.

Each source (kept or configured) has one lease row (``detector_service/postgres_sources.py``);
a replica runs only the sources whose lease it holds. Every ``lease_renew_s`` a replica says it
is alive, renews what it holds, adopts the sources it was just asked to add, and claims sources
nobody holds up to its fair share (sources / live replicas, rounded up); holding more than that
(a replica joined) it hands the surplus back for the others to claim. A replica that dies stops
renewing: its leases expire after ``lease_s`` and the others claim its sources at their next
tick, so a source is back within ``lease_s + lease_renew_s``. A renewal names the lease's fencing
token: a replica that stalled past its lease finds the source gone at its next renewal and stops
running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from prometheus_client import Counter

from detector_service.postgres_sources import Owner, PostgresSourceStore
from detector_service.sources import SourceRegistry
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)


class Ownership:
    def __init__(
        self,
        store: PostgresSourceStore,
        registry: SourceRegistry,
        *,
        replica: str,
        lease_s: float,
        renew_s: float,
        configured: list[pb.SourceSpec],
        outages: Counter,
        started: Callable[[str, int], None] = lambda source_id, at_ns: None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.replica = replica
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.configured = {spec.id: spec for spec in configured}
        #: Counts the outages of the database that leases were kept through (or lost in).
        self.outages = outages
        #: Told each source this replica starts running and when (what another left behind, such
        #: as incidents still open, is closed there).
        self.started = started
        #: The address other replicas and clients reach this one at (set once serving).
        self.address = ""
        #: Each source held, with its lease's fencing token.
        self.held: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self, address: str) -> None:
        """Claim a first share now, then keep the leases in the background."""
        self.address = address
        await self.store.add_leases(sorted(self.configured))
        await self.tick()
        self._task = asyncio.create_task(self._keep(), name="detector-ownership")

    async def _keep(self) -> None:
        renewed = time.monotonic()
        failing = False
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.tick()
                renewed = time.monotonic()
                if failing:
                    log.info("keeping source leases again (%d held)", len(self.held))
                    failing = False
            except Exception as exc:
                # The database may be back at the next tick; until the lease runs out we may
                # still run what we hold (nobody else can claim it before then). After that,
                # another replica may have claimed our sources: stop them, so none runs twice.
                # Said once per outage: a restarting database fails every tick.
                if not failing:
                    log.warning("keeping source leases: %s", exc)
                    self.outages.inc()
                failing = True
                if self.held and time.monotonic() - renewed >= self.lease_s:
                    log.warning(
                        "leases not renewed for %.0f s: stopping %d sources",
                        self.lease_s,
                        len(self.held),
                    )
                    for source_id in sorted(self.held):
                        self._drop(source_id)

    async def tick(self) -> None:
        total, replicas = await self.store.heartbeat(self.replica, self.address, self.lease_s)
        await self._adopt()
        if self.held:
            kept = await self.store.renew(self.replica, self.held, lease_s=self.lease_s)
            for source_id in sorted(set(self.held) - kept):
                log.warning("source %r is now run by another replica: stopping it", source_id)
                self._drop(source_id)
        share = math.ceil(total / max(1, replicas))
        if len(self.held) > share:
            surplus = sorted(self.held)[share:]
            log.info("handing %d sources to other replicas: %s", len(surplus), surplus)
            for source_id in surplus:
                self._drop(source_id)
            await self.store.release(self.replica, surplus)
        elif len(self.held) < share:
            claimed = await self.store.claim(
                self.replica,
                held=sorted(self.held),
                known=sorted(self.configured),
                limit=share - len(self.held),
                lease_s=self.lease_s,
            )
            for source_id, token in sorted(claimed.items()):
                await self._run(source_id, token)

    async def _adopt(self) -> None:
        """Own the sources added here since the last tick; one another replica claimed first
        stops here."""
        added = sorted({s.spec.id for s in self.registry.all()} - set(self.held))
        if not added:
            return
        adopted = await self.store.adopt(self.replica, added, self.lease_s)
        self.held.update(adopted)
        for source_id in added:
            if source_id not in adopted:
                self.registry.release(source_id)

    async def _run(self, source_id: str, token: int) -> None:
        started_ns = time.time_ns()
        spec = self.configured.get(source_id)
        if spec is not None:
            self.registry.add(spec)
            overrides = await asyncio.to_thread(self.store.load_overrides)
            await self.registry.apply_overrides([o for o in overrides if o[1].id == source_id])
        else:
            kept = await self.store.get(source_id)
            if kept is None:  # removed meanwhile
                await self.store.release(self.replica, [source_id])
                return
            self.registry.restore([kept])
        self.held[source_id] = token
        log.info("running source %r (lease %d)", source_id, token)
        self.started(source_id, started_ns)

    def _drop(self, source_id: str) -> None:
        self.held.pop(source_id, None)
        self.registry.release(source_id)

    def runs(self, source_id: str) -> bool:
        with contextlib.suppress(Exception):
            self.registry.get(source_id)
            return True
        return False

    async def owners(self) -> dict[str, Owner | None]:
        return await self.store.owners()

    async def stop(self) -> None:
        """Stop keeping leases and hand back those held, so others take over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        held = sorted(self.held)
        # Stopped here before they are handed back: never running on two replicas at once.
        for source_id in held:
            self._drop(source_id)
        if held:
            with contextlib.suppress(Exception):
                await self.store.release(self.replica, held)
