"""Fault 8: more analyses than the analyzer runs at once.

One job runs at a time and two may wait: the next ones queue with their positions, and past the
queue they are refused at once, RESOURCE_EXHAUSTED (OVERLOADED) over gRPC and 429 with a
``Retry-After`` header and ``"retryable": true`` over the bridge. The job that was accepted keeps
its latency while refused requests keep coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time

import grpc
import httpx
import pytest

from tests.faults.analyses import analyzer_stub, history, slow_options, terminal, upload, video
from tests.faults.procs import (
    Services,
    wait_ready,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc

FRAMES = 24  # about 1.5 s a job on the long-GOP video


async def start(stub: apb_grpc.AnalyzerServiceAsyncStub, video_id: str) -> apb.Job:
    request = apb.StartAnalysisRequest(video_id=video_id, options=slow_options(FRAMES))
    return (await stub.StartAnalysis(request, timeout=10)).job


async def timed_job(stub: apb_grpc.AnalyzerServiceAsyncStub, video_id: str) -> float:
    """Seconds from submitting a job to its terminal event."""
    started = time.monotonic()
    job = await start(stub, video_id)
    events = await history(stub, job.id)
    assert terminal(events) == ["complete"]
    return time.monotonic() - started


async def test_overload_queues_then_refuses_with_a_retry_hint(tmp_path: pathlib.Path) -> None:
    data = video(frames=1500, gop=1500)
    async with Services(tmp_path) as services:
        analyzer = services.analyzer(
            VIGIL_ANALYZER_MAX_CONCURRENT_JOBS="1", VIGIL_ANALYZER_MAX_QUEUED_JOBS="2"
        )
        bridge = services.bridge(analyzer=analyzer.address)
        await asyncio.gather(wait_ready(analyzer), wait_ready(bridge))
        api = f"http://127.0.0.1:{bridge.port}/api/analyses"
        async with analyzer_stub(analyzer.address) as stub, httpx.AsyncClient(timeout=10) as http:
            video_id = (await upload(stub, data, start=False)).video.id
            alone = await timed_job(stub, video_id)

            # Full: one running, two queued with their positions.
            started = time.monotonic()
            running = await start(stub, video_id)
            queued = [await start(stub, video_id), await start(stub, video_id)]
            assert [job.queue_position for job in queued] == [1, 2]
            for position, job in enumerate(queued, start=1):
                got = (await stub.GetJob(apb.GetJobRequest(job_id=job.id), timeout=5)).job
                assert got.state == apb.JOB_STATE_QUEUED
                assert got.queue_position == position

            # One more is refused at once, with a reason that says to come back.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await start(stub, video_id)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (refused.value.details() or "").startswith("OVERLOADED: the queue is full")
            response = await http.post(api, json={"video_id": video_id})
            assert response.status_code == 429, response.text
            assert response.headers["retry-after"].isdigit()
            body = response.json()
            assert body["code"] == "OVERLOADED"
            assert body["retryable"] is True

            # Refused requests keep coming while the accepted job runs; it keeps its latency.
            refusals = 0

            async def hammer() -> None:
                nonlocal refusals
                while True:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await start(stub, video_id)
                    if (await http.post(api, json={"video_id": video_id})).status_code == 429:
                        refusals += 1
                    await asyncio.sleep(0.02)

            pressure = asyncio.create_task(hammer())
            try:
                events = await history(stub, running.id)
            finally:
                pressure.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pressure
            loaded = time.monotonic() - started
            assert terminal(events) == ["complete"]
            assert refusals >= 5
            assert loaded < 2.5 * alone + 1.0, (alone, loaded)

            # The queue moved up: the first queued job runs (or ran), the second is first.
            waiting = await stub.GetJob(apb.GetJobRequest(job_id=queued[1].id), timeout=5)
            assert waiting.job.queue_position in (0, 1)
            first = await history(stub, queued[0].id)
            positions = [e.progress.queue_position for e in first if e.progress.queue_position]
            assert positions[:1] == [1], positions
            print(f"job alone {alone:.2f} s, with the queue full {loaded:.2f} s, {refusals} 429s")
