"""Fault 3: the analyzer SIGKILLed mid-job and started again on the same data directory.

The job must be neither lost nor duplicated: it runs again from the start (or fails INTERRUPTED,
retryable, past its attempts), its history has exactly one terminal event, its sequences have no
gaps, and a subscriber arriving afterwards replays that same true history.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal

from tests.faults.analyses import analyzer_stub, history, terminal, upload, video
from tests.faults.procs import (
    Services,
    eventually,
    wait_ready,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as apb

# A long-GOP video: each of the 64 uniform samples decodes from the first frame, so the job takes
# seconds (about 4 s here), long enough to be killed in the middle.
SLOW_VIDEO = {"frames": 1500, "gop": 1500}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; only its parent could reap it, and its parent is gone.
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_analyzer_killed_mid_job_resumes_it_once(tmp_path: pathlib.Path) -> None:
    data = video(**SLOW_VIDEO)
    async with Services(tmp_path) as services:
        analyzer = services.analyzer()
        await wait_ready(analyzer)
        async with analyzer_stub(analyzer.address) as stub:
            job_id = (await upload(stub, data, start=True)).job.id
            # Killed while it decodes frames (after the 25 % "Extracting frames" event).
            request = apb.StreamAnalysisEventsRequest(job_id=job_id)
            call = stub.StreamAnalysisEvents(request, timeout=30)
            seen = []
            async for event in call:
                seen.append(event)
                if event.progress.stage == apb.STAGE_EXTRACTING_FRAMES:
                    break
            call.cancel()
            await asyncio.sleep(0.5)
            before = await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)
            assert before.job.state == apb.JOB_STATE_RUNNING, before.job
            workers = analyzer.children()
            assert workers, "the analyzer has no media worker processes"
            analyzer.signal(signal.SIGKILL)
            await analyzer.wait_exit(5)

        # Its decoders die with it: none goes on writing frames into the job's directory.
        async def orphans_gone() -> bool:
            return not any(alive(pid) for pid in workers)

        await eventually(orphans_gone, 3.0, f"media workers {workers} gone after the kill")

        analyzer.start()
        await wait_ready(analyzer)
        async with analyzer_stub(analyzer.address) as stub:
            events = await history(stub, job_id)
            job = (await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)).job

            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert terminal(events) == ["complete"], [e.WhichOneof("event") for e in events]
            # The history is the true one: what a subscriber saw live before the kill is its
            # beginning, unchanged; and the job was neither lost nor duplicated.
            assert [e.SerializeToString() for e in events[: len(seen)]] == [
                e.SerializeToString() for e in seen
            ]
            jobs = (await stub.ListJobs(apb.ListJobsRequest(), timeout=5)).jobs
            assert [j.id for j in jobs] == [job_id]
            assert job.state == apb.JOB_STATE_SUCCEEDED, job
            assert job.attempts == 2, job
            messages = [e.progress.message for e in events if e.HasField("progress")]
            assert any("restarted" in m for m in messages), messages
            # Each attempt started once: two "Starting" events, one per run, in order.
            assert sum(m.startswith("Starting video analysis") for m in messages) == 2, messages
            assert len(job.result.frames) == 64

            # A late subscriber from 0 replays exactly the same history.
            again = await history(stub, job_id)
            assert [e.SerializeToString() for e in again] == [e.SerializeToString() for e in events]
            # And one that joined mid-history gets the rest, nothing twice.
            middle = len(events) // 2
            rest = await history(stub, job_id, after=middle)
            assert [e.sequence for e in rest] == list(range(middle + 1, len(events) + 1))


async def test_analyzer_killed_past_max_attempts_fails_the_job_retryable(
    tmp_path: pathlib.Path,
) -> None:
    data = video(**SLOW_VIDEO)
    async with Services(tmp_path) as services:
        # One attempt in all: the interrupted run is the last, so the job must fail, with why.
        analyzer = services.analyzer(VIGIL_ANALYZER_MAX_ATTEMPTS="1")
        await wait_ready(analyzer)
        async with analyzer_stub(analyzer.address) as stub:
            job_id = (await upload(stub, data, start=True)).job.id

            async def running() -> bool:
                job = (await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)).job
                return job.state == apb.JOB_STATE_RUNNING and job.attempts == 1

            await eventually(running, 10.0, "the job running")
            analyzer.signal(signal.SIGKILL)
            await analyzer.wait_exit(5)

        analyzer.start()
        await wait_ready(analyzer)
        async with analyzer_stub(analyzer.address) as stub:
            events = await history(stub, job_id)
            job = (await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)).job
            assert terminal(events) == ["error"]
            assert events[-1].error.code == "INTERRUPTED"
            assert events[-1].error.retryable
            assert "stopped while this job was running" in events[-1].error.message
            assert job.state == apb.JOB_STATE_FAILED
            assert job.error.code == "INTERRUPTED"
            assert job.error.retryable
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
