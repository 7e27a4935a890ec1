"""The takeover half of ``vigil bench scale``: SIGKILL the analyzer running a job, then a detector
running sources, and time how long the other replica takes to carry on.

Who runs what is read from the shared PostgreSQL database, as the replicas themselves decide it:
``analyzer_jobs.owner`` / ``lease_expires`` and ``detector_leases.owner`` / ``expires``. A lease's
expiry is the one the database holds once the killed replica can no longer renew it (its last
renewal plus ``lease_s``), so "from lease expiry" excludes the waiting that ``lease_s`` is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from vigil.analyzer.v1 import analyzer_service_pb2 as apb

if TYPE_CHECKING:
    from vigil.devtools.cluster import Cluster, Replica
    from vigil.sdk import AnalysisOptions, AsyncAnalyzerClient, Job

# How long a killed replica's work may take to come back before the figure reads "not back".
BACK_WITHIN_S = 120.0
POLL_S = 0.01
# Tries at catching a job mid-run (a short job may finish between being seen and the kill).
KILL_TRIES = 3


def named(replicas: Sequence[Replica], name: str) -> Replica:
    for replica in replicas:
        if replica.name == name:
            return replica
    raise RuntimeError(f"no replica named {name!r} among {[r.name for r in replicas]}")


def job_row(database: str, job_id: str) -> tuple[str | None, int, float | None]:
    """(owner, state, lease expiry as a Unix time) of a job."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT owner, state, lease_expires FROM analyzer_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    if row is None:
        return None, 0, None
    return row[0], int(row[1]), None if row[2] is None else row[2].timestamp()


async def _running(database: str, job_id: str) -> str:
    """The replica running the job, as soon as one does."""
    deadline = time.monotonic() + BACK_WITHIN_S
    while time.monotonic() < deadline:
        owner, state, _ = job_row(database, job_id)
        if state == apb.JOB_STATE_RUNNING and owner:
            return owner
        if state > apb.JOB_STATE_RUNNING:
            raise RuntimeError(f"job {job_id} ended before it was seen running")
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"job {job_id} never ran")


async def analyzer_takeover(
    cluster: Cluster, database: str, video_id: str, options: AnalysisOptions
) -> dict[str, Any]:
    """Start a job, SIGKILL the analyzer running it, and time the other taking it over."""
    from vigil.sdk import AsyncAnalyzerClient

    async with AsyncAnalyzerClient(cluster.analyzer_target) as client:
        for _ in range(KILL_TRIES):
            job = await client.start_analysis(video_id, options)
            victim = named(cluster.analyzers, await _running(database, job.id))
            victim.kill()
            killed_at = time.time()
            owner, state, expires = job_row(database, job.id)
            if state == apb.JOB_STATE_RUNNING and owner == victim.name:
                break
            # It finished in between: bring the replica back and try again.
            victim.start()
            cluster.wait_ready(60.0, [victim])
        else:
            return {"error": f"no job caught mid-run in {KILL_TRIES} tries"}
        deadline = time.monotonic() + BACK_WITHIN_S
        back_at = None
        while time.monotonic() < deadline:
            owner, state, _ = job_row(database, job.id)
            if owner and owner != victim.name:
                back_at = time.time()
                break
            await asyncio.sleep(POLL_S)
        if back_at is None or expires is None:
            return {"error": f"job not taken over within {BACK_WITHIN_S:.0f} s"}
        done = await _finished(client, job.id)
    return {
        "kill_to_running_s": round(back_at - killed_at, 2),
        "lease_expiry_to_running_s": round(back_at - expires, 2),
        "lease_left_at_kill_s": round(expires - killed_at, 2),
        "killed": victim.name,
        "taken_over_by": owner,
        "state": done.state,
        "attempts": done.attempts,
    }


async def _finished(client: AsyncAnalyzerClient, job_id: str) -> Job:
    deadline = time.monotonic() + BACK_WITHIN_S
    while True:
        job = await client.get_job(job_id)
        if job.finished or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.1)


def source_leases(database: str) -> dict[str, tuple[str | None, float | None]]:
    """Source id -> (owning replica, lease expiry as a Unix time)."""
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT source_id, owner, expires FROM detector_leases").fetchall()
    return {row[0]: (row[1], None if row[2] is None else row[2].timestamp()) for row in rows}


class Watch:
    """Subscribes to one source through the detector target again and again; notes when each
    subscription started and when its first frame came."""

    def __init__(self, target: str, source_id: str) -> None:
        self.target = target
        self.source_id = source_id
        # (subscription start, first frame's arrival or None), Unix times.
        self.attempts: list[list[float | None]] = []

    def back_after(self, at: float) -> float | None:
        """Arrival of the first frame of a subscription started after ``at``."""
        arrivals = [a[1] for a in self.attempts if a[0] is not None and a[0] > at]
        return min((a for a in arrivals if a is not None), default=None)

    def streaming(self) -> bool:
        return bool(self.attempts) and self.attempts[-1][1] is not None

    async def run(self) -> None:
        from vigil.sdk import AsyncDetectorClient, Frame

        async with AsyncDetectorClient(self.target) as client:
            while True:
                attempt: list[float | None] = [time.time(), None]
                self.attempts.append(attempt)
                # A broken stream (its replica killed, a redirect to a dead owner) is tried again.
                with contextlib.suppress(Exception):
                    # Not waiting for a replica to be ready: a dead owner fails at once.
                    frames = client.subscribe(self.source_id, omit_jpeg=True, wait_for_ready=False)
                    async for item in frames:
                        if isinstance(item, Frame) and attempt[1] is None:
                            attempt[1] = time.time()
                await asyncio.sleep(0.05)


async def detector_takeover(cluster: Cluster, database: str, goal_s: float) -> dict[str, Any]:
    """SIGKILL the detector running the first source; time its sources streaming again."""
    leases = source_leases(database)
    owners = sorted(o for o, _ in leases.values() if o)
    if not owners:
        return {"error": "no detector owns a source"}
    victim = named(cluster.detectors, owners[0])
    sources = sorted(s for s, (o, _) in leases.items() if o == victim.name)
    watches = [Watch(cluster.detector_target, s) for s in sources]
    tasks = [asyncio.create_task(w.run()) for w in watches]
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if all(w.streaming() for w in watches):
                break
            await asyncio.sleep(0.05)
        victim.kill()
        killed_at = time.time()
        await asyncio.sleep(0.2)
        expiries = [e for s, (_, e) in source_leases(database).items() if s in sources and e]
        backs: list[float | None] = []
        deadline = time.monotonic() + BACK_WITHIN_S
        while time.monotonic() < deadline:
            backs = [w.back_after(killed_at) for w in watches]
            if all(b is not None for b in backs):
                break
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if not all(b is not None for b in backs):
        return {"error": f"sources not back within {BACK_WITHIN_S:.0f} s", "killed": victim.name}
    last = max(b for b in backs if b is not None)
    took = last - killed_at
    verdict = "met" if took <= goal_s else "missed"
    return {
        "kill_to_streaming_s": round(took, 2),
        "lease_expiry_to_streaming_s": round(last - max(expiries), 2) if expiries else None,
        "sources_moved": len(sources),
        "killed": victim.name,
        "goal": f"{verdict}: {took:.1f} s <= {goal_s:g} s",
    }
