"""Jobs: a bounded FIFO queue, a fixed number running at once, cancellation and recovery.

A job's stored state and its events are written together (see ``JobStore.append_event``), so a
follower replaying from the store and a restarted service always see the same story.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2

from analyzer_service.events import EventBus
from analyzer_service.metrics import AnalyzerMetrics
from analyzer_service.pipeline import Pipeline
from analyzer_service.stages import progress
from analyzer_service.store import Event, JobStore, is_terminal
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2
from vigil.core.errors import NotFound, Overloaded, VigilError

log = logging.getLogger(__name__)

FINISHED_STATES = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)
# A follower re-reads the store this often even without live events; it heals any live event
# that was lost (a publisher cancelled between storing and publishing).
FOLLOW_POLL_S = 5.0
REPLAY_BATCH = 500


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def error_of(exc: VigilError) -> common_pb2.Error:
    return common_pb2.Error(code=exc.code, message=exc.message, retryable=exc.retryable)


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
    ) -> None:
        self.store = store
        self.metrics = metrics or pipeline.metrics
        self.bus = bus
        self.pipeline = pipeline
        self.max_running = max_running
        self.max_queued = max_queued
        self.max_attempts = max_attempts
        self._queue: collections.deque[pb.Job] = collections.deque()
        self._announced: dict[str, int] = {}
        self._reserved = 0
        self._running: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    async def recover(self) -> None:
        """Take up the jobs a previous run left unfinished, so none is silently lost.

        Queued jobs queue again. A job that was running starts again from the beginning (its
        attempts go up, and an event says why the job went back), unless it has had
        ``max_attempts`` already: then it fails with INTERRUPTED, retryable. The history keeps the
        interrupted attempt's events; no terminal event was stored for it, so none is repeated.
        """
        for job in await self.store.unfinished_jobs():
            was = "running" if job.state == pb.JOB_STATE_RUNNING else "queued"
            if job.attempts >= self.max_attempts:
                error = common_pb2.Error(
                    code="INTERRUPTED",
                    message=(
                        f"The analyzer stopped while this job was {was}, "
                        f"{job.attempts} time(s); start it again."
                    ),
                    retryable=True,
                )
                await self._finish(job, pb.JOB_STATE_FAILED, Event(error=error))
                log.warning("job %s was %s when the service stopped; marked failed", job.id, was)
                continue
            if job.attempts:
                message = (
                    f"The analyzer restarted while this job was {was}; it runs again from the "
                    f"start (attempt {job.attempts + 1} of {self.max_attempts})"
                )
            else:
                message = "The analyzer restarted; the job is queued again"
            job.state = pb.JOB_STATE_QUEUED
            await self._emit(job, progress(pb.STAGE_QUEUED, 0, message))
            self._queue.append(job)
            log.warning("job %s was %s when the service stopped; queued again", job.id, was)
        self._dispatch()
        await self._announce_queue()

    async def submit(self, video: pb.Video, options: pb.AnalysisOptions) -> pb.Job:
        if len(self._queue) + self._reserved >= self.max_queued:
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
        )
        self._reserved += 1
        try:
            await self.store.create_job(job)
        finally:
            self._reserved -= 1
        self._queue.append(job)
        self._dispatch()
        await self._announce_queue()
        return await self.get(job.id)

    async def get(self, job_id: str) -> pb.Job:
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        job.queue_position = self._position(job.id)
        return job

    async def list(
        self, *, page_size: int, page_token: str, state: pb.JobState.ValueType
    ) -> tuple[list[pb.Job], str]:
        jobs, token = await self.store.list_jobs(
            page_size=page_size, page_token=page_token, state=state
        )
        for job in jobs:
            job.ClearField("result")
            job.queue_position = self._position(job.id)
        return jobs, token

    async def cancel(self, job_id: str) -> pb.Job:
        job = await self.get(job_id)
        queued = next((j for j in self._queue if j.id == job_id), None)
        if queued is not None:
            self._queue.remove(queued)
            self._announced.pop(job_id, None)
            await self._finish(queued, pb.JOB_STATE_CANCELLED, self._cancelled())
            await self._announce_queue()
        elif (task := self._running.get(job_id)) is not None:
            task.cancel()
            # The task records the cancellation itself; wait for that so the answer shows it.
            await asyncio.wait({task}, timeout=10)
            job = await self.get(job_id)
            if task.done() and job.state not in FINISHED_STATES:
                # Cancelled before its first step, the task never ran to record anything.
                await self._finish(job, pb.JOB_STATE_CANCELLED, self._cancelled())
        else:
            return job
        return await self.get(job_id)

    async def follow(self, job_id: str, after_sequence: int) -> AsyncIterator[Event]:
        """Stored events after ``after_sequence``, then live ones, until the terminal event."""
        await self.get(job_id)
        last = after_sequence
        while True:
            with self.bus.subscribe(job_id) as live:
                # Subscribed before reading the store: whatever the read misses arrives live.
                while True:
                    job = await self.store.get_job(job_id)
                    batch = await self.store.list_events(job_id, last, REPLAY_BATCH)
                    for event in batch:
                        yield event
                        last = event.sequence
                        if is_terminal(event):
                            return
                    if len(batch) < REPLAY_BATCH:
                        break
                if job is not None and job.state in FINISHED_STATES:
                    # State and terminal event are stored together: nothing more will come.
                    return
                while (news := await live.get(FOLLOW_POLL_S)) is not None:
                    if news.sequence <= last:
                        continue
                    if news.sequence > last + 1:
                        break  # a gap: the store has the missing events
                    yield news
                    last = news.sequence
                    if is_terminal(news):
                        return

    async def close(self) -> None:
        """Stop running jobs without recording an outcome: the next start marks them INTERRUPTED."""
        self._closing = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def counts(self) -> dict[str, int]:
        """Jobs queued and running now."""
        return {"queued": len(self._queue), "running": len(self._running)}

    def _position(self, job_id: str) -> int:
        for position, job in enumerate(self._queue, start=1):
            if job.id == job_id:
                return position
        return 0

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self.max_running and not self._closing:
            job = self._queue.popleft()
            self._announced.pop(job.id, None)
            self._running[job.id] = asyncio.create_task(self._run(job), name=f"job-{job.id}")

    async def _announce_queue(self) -> None:
        for position, job in enumerate(list(self._queue), start=1):
            # Re-checked before every write: the job may have started or moved meanwhile.
            if self._position(job.id) != position or self._announced.get(job.id) == position:
                continue
            self._announced[job.id] = position
            event = progress(pb.STAGE_QUEUED, 0, f"Waiting for a free worker (position {position})")
            event.progress.queue_position = position
            await self._emit(job, event, save_job=False)

    async def _emit(self, job: pb.Job, event: Event, *, save_job: bool = True) -> None:
        event.job_id = job.id
        if event.HasField("progress"):
            job.stage = event.progress.stage
            job.percent = event.progress.percent
        job.updated_at.CopyFrom(_now())
        stored = await self.store.append_event(event, job=job if save_job else None)
        self.bus.publish(stored)

    def _cancelled(self) -> Event:
        error = common_pb2.Error(code="CANCELLED", message="The job was cancelled.")
        return Event(error=error)

    async def _finish(self, job: pb.Job, state: pb.JobState.ValueType, event: Event) -> None:
        job.state = state
        job.queue_position = 0
        if event.HasField("error"):
            job.error.CopyFrom(event.error)
        if event.HasField("complete"):
            job.result.CopyFrom(event.complete.result)
        await self._emit(job, event)
        self.metrics.job_finished(state)

    async def _run(self, queued: pb.Job) -> None:
        job = pb.Job()
        job.CopyFrom(queued)
        job.state = pb.JOB_STATE_RUNNING
        job.attempts += 1
        try:
            try:
                result = await self.pipeline.run(job, lambda event: self._emit(job, event))
            except asyncio.CancelledError:
                if self._closing:
                    raise
                await asyncio.shield(self._finish(job, pb.JOB_STATE_CANCELLED, self._cancelled()))
            except VigilError as exc:
                await asyncio.shield(
                    self._finish(job, pb.JOB_STATE_FAILED, Event(error=error_of(exc)))
                )
            except Exception:
                log.exception("job %s failed", job.id)
                error = common_pb2.Error(code="INTERNAL", message="internal error; see the logs")
                await asyncio.shield(self._finish(job, pb.JOB_STATE_FAILED, Event(error=error)))
            else:
                complete = pb.AnalysisComplete(result=result, timings=result.timings)
                await asyncio.shield(
                    self._finish(job, pb.JOB_STATE_SUCCEEDED, Event(complete=complete))
                )
        finally:
            self._running.pop(job.id, None)
            if not self._closing:
                self._dispatch()
                await self._announce_queue()
