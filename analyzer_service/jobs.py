"""Jobs: one queue in the store shared by every replica, leases, cancellation and takeover.

A replica claims queued jobs up to its own ``max_running`` (``JobStore.claim``: a lease with a
fencing token), renews the leases while the jobs run, and writes a job's state and events only
under its lease, so a replica that lost a job (stalled past its lease, then woke) can no longer
write to it. A replica that dies leaves leases that expire; another replica then claims the job
and runs it again from the start, counting the attempt. Jobs are claimed when submitted here,
when another replica says one was queued (``JobStore.watch``), and every ``renew_s`` otherwise.

A job's stored state and its events are written together (see ``JobStore.append_event``), so a
follower replaying from the store, on any replica, and a restarted service see the same story
(following a job lives in ``following``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2

from analyzer_service.events import EventBus
from analyzer_service.following import follow
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.outages import outlast
from analyzer_service.pipeline import Pipeline
from analyzer_service.stages import progress
from analyzer_service.store import FINISHED_STATES, Event, JobStore, Lease, LeaseLost, Renewal
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2
from vigil.core.errors import NotFound, Overloaded, Unavailable, VigilError

log = logging.getLogger(__name__)

# How often CancelJob looks whether the replica running the job has recorded the cancellation.
CANCEL_POLL_S = 0.05


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def error_of(exc: VigilError) -> common_pb2.Error:
    return common_pb2.Error(code=exc.code, message=exc.message, retryable=exc.retryable)


def _queued_at(position: int) -> Event:
    event = progress(pb.STAGE_QUEUED, 0, f"Waiting for a free worker (position {position})")
    event.progress.queue_position = position
    return event


class JobManager:
    def __init__(
        self,
        *,
        store: JobStore,
        bus: EventBus,
        pipeline: Pipeline,
        max_running: int,
        max_queued: int,
        max_attempts: int = 3,
        metrics: AnalyzerMetrics | None = None,
        replica: str = "local",
        lease_s: float = 30.0,
        renew_s: float = 5.0,
    ) -> None:
        self.store = store
        self.metrics = metrics or pipeline.metrics
        self.bus = bus
        self.pipeline = pipeline
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_attempts = max_attempts
        self.replica = replica
        self.lease_s = lease_s
        self.renew_s = renew_s
        self._reserved = 0
        self._queued = 0
        self._running: dict[str, tuple[asyncio.Task[None], Lease]] = {}
        # Jobs whose lease was lost: their tasks stop without writing anything.
        self._lost: set[str] = set()
        self._claiming = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tender: asyncio.Task[None] | None = None
        self._closing = False

    async def recover(self) -> None:
        """Take part in the queue: claim what is waiting, then keep claiming and renewing.

        Leases held under this replica's name by an earlier run of it are released first, so its
        jobs start again at once rather than after their leases expire. A job claimed after its
        runner stopped (it was RUNNING) starts again from the beginning: its attempts go up and
        an event says why the job went back, unless it has had ``max_attempts`` already: then
        it fails with INTERRUPTED, retryable. The history keeps the interrupted attempt's
        events; no terminal event was stored for it, so none is repeated.
        """
        await self.store.release(self.replica)
        self.store.watch(self)
        await self._claim()
        await self._announce_queue()
        self._tender = asyncio.create_task(self._tend(), name="jobs-tend")

    async def submit(
        self,
        video: pb.Video,
        options: pb.AnalysisOptions,
        *,
        recording: pb.RecordingRange | None = None,
    ) -> pb.Job:
        waiting = len(await self.store.queue_positions())
        if waiting + self._reserved >= self.max_queued:
            raise Overloaded(f"the queue is full ({self.max_queued} jobs); try again later")
        now = _now()
        job = pb.Job(
            id=uuid.uuid4().hex,
            video=video,
            state=pb.JOB_STATE_QUEUED,
            stage=pb.STAGE_QUEUED,
            options=options,
            created_at=now,
            updated_at=now,
            recording=recording,
        )
        # Older jobs first; then, with room left, the new job is leased here as it is stored.
        await self._claim()
        self._reserved += 1
        try:
            async with self._claiming:
                room = len(self._running) < self.max_running and not self._closing
                lease = await self.store.create_job(
                    job, owner=self.replica if room else None, lease_s=self.lease_s
                )
                if lease is not None:
                    self._start_task(lease)
        finally:
            self._reserved -= 1
        await self._announce_queue()
        return await self.get(job.id)

    async def get(self, job_id: str) -> pb.Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        job.queue_position = (await self.store.queue_positions()).get(job_id, 0)
        return job

    async def list(
        self, *, page_size: int, page_token: str, state: pb.JobState.ValueType
    ) -> tuple[list[pb.Job], str]:
        jobs, token = await self.store.list_jobs(
            page_size=page_size, page_token=page_token, state=state
        )
        positions = await self.store.queue_positions()
        for job in jobs:
            job.ClearField("result")
            job.queue_position = positions.get(job.id, 0)
        return jobs, token

    async def cancel(self, job_id: str) -> pb.Job:
        """Cancel the job wherever it is: waiting (this replica claims it to record that),
        running here, or running on another replica (asked through the store; it records the
        cancellation within a renewal interval)."""
        job = await self.get(job_id)
        if job.state in FINISHED_STATES:
            return job
        if (running := self._running.get(job_id)) is not None:
            task, lease = running
            task.cancel()
            # The task records the cancellation itself; wait for that so the answer shows it.
            await asyncio.wait({task}, timeout=10)
            job = await self.get(job_id)
            if task.done() and job.state not in FINISHED_STATES and job_id not in self._lost:
                # Cancelled before its first step, the task never ran to record anything.
                with contextlib.suppress(LeaseLost):
                    await self._finish(job, pb.JOB_STATE_CANCELLED, self._cancelled(), lease)
            return await self.get(job_id)
        for lease in await self.store.claim(
            self.replica, lease_s=self.lease_s, limit=1, job_id=job_id
        ):
            await self._finish(lease.job, pb.JOB_STATE_CANCELLED, self._cancelled(), lease)
            await self._announce_queue()
            return await self.get(job_id)
        await self.store.request_cancel(job_id)
        deadline = time.monotonic() + 10 + self.renew_s
        while job.state not in FINISHED_STATES and time.monotonic() < deadline:
            await asyncio.sleep(CANCEL_POLL_S)
            job = await self.get(job_id)
        return job

    async def follow(self, job_id: str, after_sequence: int) -> AsyncIterator[Event]:
        """Stored events after ``after_sequence``, then live ones, until the terminal event.

        Reads only the store and the bus (``following.follow``); any replica serves it.
        """
        await self.get(job_id)
        async for event in follow(
            self.store, self.bus, self.metrics.database_waits, job_id, after_sequence
        ):
            yield event

    async def close(self) -> None:
        """Stop running jobs without recording an outcome and release their leases, so that
        another replica (or this one, started again) takes them over at once."""
        self._closing = True
        if self._tender is not None:
            self._tender.cancel()
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(
            *tasks, *([self._tender] if self._tender else []), return_exceptions=True
        )
        try:
            await self.store.release(self.replica)
        except Exception:  # the store may be gone; the leases then expire instead
            log.warning("could not release this replica's leases", exc_info=True)

    def counts(self) -> dict[str, int]:
        """Jobs waiting in the shared queue (as last seen) and running here now."""
        return {"queued": self._queued, "running": len(self._running)}

    # The store's Listener: news from other replicas.
    def event_stored(self, job_id: str, sequence: int) -> None:
        self.bus.publish(Event(job_id=job_id, sequence=sequence))

    def job_queued(self, job_id: str) -> None:
        self._wake.set()

    def cancel_requested(self, job_id: str) -> None:
        if (running := self._running.get(job_id)) is not None:
            running[0].cancel()

    async def _tend(self) -> None:
        """Renew the leases held, and claim jobs when woken or every ``renew_s``."""
        renewed = time.monotonic()
        away = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.renew_s)
            self._wake.clear()
            try:
                if time.monotonic() - renewed >= self.renew_s:
                    renewed = time.monotonic()
                    await self._renew()
                await self._claim()
                await self._announce_queue()
            except Unavailable as exc:
                # The leases held stay held: nobody can claim them while the database is away,
                # and the next renewal after it (within lease_s) keeps them.
                if not away:
                    log.warning("tending the job queue: %s; trying every round", exc.message)
                away = True
                continue
            except Exception:
                log.warning("tending the job queue failed", exc_info=True)
                continue
            if away:
                log.info("tending the job queue again")
                away = False

    async def _renew(self) -> None:
        for job_id, (task, lease) in list(self._running.items()):
            renewal = await self.store.renew(lease, lease_s=self.lease_s)
            if renewal is Renewal.LOST:
                log.warning("job %s: lease lost; another replica runs it now", job_id)
                self._lost.add(job_id)
                task.cancel()
            elif renewal is Renewal.CANCEL:
                task.cancel()

    async def _claim(self) -> None:
        async with self._claiming:
            free = self.max_running - len(self._running)
            if free <= 0 or self._closing:
                return
            leases = await self.store.claim(self.replica, lease_s=self.lease_s, limit=free)
            for lease in leases:
                self._start_task(lease)

    def _start_task(self, lease: Lease) -> None:
        job_id = lease.job.id
        task = asyncio.create_task(self._take(lease), name=f"job-{job_id}")
        self._running[job_id] = (task, lease)
        # A callback, not a ``finally``: a task cancelled before its first step runs no code.
        task.add_done_callback(lambda _: self._done(job_id))

    def _done(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._lost.discard(job_id)
        if not self._closing:
            self._wake.set()

    async def _announce_queue(self) -> None:
        for event in await self.store.announce_queue(_queued_at):
            self.bus.publish(event)
        self._queued = len(await self.store.queue_positions())

    async def _emit(
        self, job: pb.Job, event: Event, lease: Lease, *, save_job: bool = True
    ) -> None:
        event.job_id = job.id
        if event.HasField("progress"):
            job.stage = event.progress.stage
            job.percent = event.progress.percent
        job.updated_at.CopyFrom(_now())
        # Stamped once: tried again, the same event is recognised and kept once.
        if not event.HasField("time"):
            event.time.GetCurrentTime()
        stored = await outlast(
            lambda: self.store.append_event(event, job=job if save_job else None, lease=lease),
            f"job {job.id}: storing an event",
            self.metrics.database_waits,
        )
        self.bus.publish(stored)

    def _cancelled(self) -> Event:
        error = common_pb2.Error(code="CANCELLED", message="The job was cancelled.")
        return Event(error=error)

    async def _finish(
        self, job: pb.Job, state: pb.JobState.ValueType, event: Event, lease: Lease
    ) -> None:
        job.state = state
        job.queue_position = 0
        if event.HasField("error"):
            job.error.CopyFrom(event.error)
        if event.HasField("complete"):
            job.result.CopyFrom(event.complete.result)
        await self._emit(job, event, lease)
        self.metrics.job_finished(state)

    async def _take(self, lease: Lease) -> None:
        try:
            await self._start(lease)
        except LeaseLost:
            log.warning(
                "job %s: lease lost; its writes are refused, another replica has it", lease.job.id
            )
        except Unavailable:
            # Out of the database for longer than an outage: the lease, no longer renewed,
            # expires and the job runs again (here or elsewhere) once the database is back.
            log.warning("job %s: stopped, its database out of reach; it runs again", lease.job.id)

    async def _start(self, lease: Lease) -> None:
        job = pb.Job()
        job.CopyFrom(lease.job)
        if lease.cancel_requested:
            await self._finish(job, pb.JOB_STATE_CANCELLED, self._cancelled(), lease)
            return
        if job.state == pb.JOB_STATE_RUNNING:
            # Its runner stopped without an outcome (a crash, a lost lease, a restart).
            if job.attempts >= self.max_attempts:
                error = common_pb2.Error(
                    code="INTERRUPTED",
                    message=(
                        f"The analyzer stopped while this job was running, "
                        f"{job.attempts} time(s); start it again."
                    ),
                    retryable=True,
                )
                await self._finish(job, pb.JOB_STATE_FAILED, Event(error=error), lease)
                log.warning("job %s was interrupted %d times; marked failed", job.id, job.attempts)
                return
            message = (
                f"The analyzer running this job stopped or restarted; it runs "
                f"again from the start (attempt {job.attempts + 1} of {self.max_attempts})"
            )
            job.state = pb.JOB_STATE_QUEUED
            await self._emit(job, progress(pb.STAGE_QUEUED, 0, message), lease)
            log.warning("job %s was interrupted; running it again", job.id)
        await self._run(job, lease)

    async def _run(self, job: pb.Job, lease: Lease) -> None:
        job.state = pb.JOB_STATE_RUNNING
        job.attempts += 1
        try:
            result = await self.pipeline.run(job, lambda event: self._emit(job, event, lease))
        except asyncio.CancelledError:
            if self._closing or job.id in self._lost:
                raise
            await asyncio.shield(
                self._finish(job, pb.JOB_STATE_CANCELLED, self._cancelled(), lease)
            )
        except LeaseLost:
            raise
        except VigilError as exc:
            await asyncio.shield(
                self._finish(job, pb.JOB_STATE_FAILED, Event(error=error_of(exc)), lease)
            )
        except Exception:
            log.exception("job %s failed", job.id)
            error = common_pb2.Error(code="INTERNAL", message="internal error; see the logs")
            await asyncio.shield(self._finish(job, pb.JOB_STATE_FAILED, Event(error=error), lease))
        else:
            complete = pb.AnalysisComplete(result=result, timings=result.timings)
            await asyncio.shield(
                self._finish(job, pb.JOB_STATE_SUCCEEDED, Event(complete=complete), lease)
            )
