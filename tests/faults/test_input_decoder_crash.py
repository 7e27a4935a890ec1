"""A decoder that crashes or hangs on a hostile file fails only that upload or job: the child
process that decoded it is killed (SIGKILL from outside, or the service's own time limit), the
caller gets a clear error, and the service goes on serving uploads and jobs.

The worker pool itself is tested in tests/analyzer_service/test_isolation.py; here the whole
service is under test, over gRPC and through the bridge.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from analyzer_service.isolation import MediaWorkers
from tests.faults.inputs import grpc_upload, mp4, refusal, running_stack, stored
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc

pytestmark = pytest.mark.timeout(60)


def kill_idle_workers(workers: MediaWorkers) -> None:
    """SIGKILL the pool's idle children, so the next call starts (and imports in) a fresh one."""
    for worker in list(workers._idle._queue):  # type: ignore[attr-defined]
        if worker is not None and worker.process.pid is not None:
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(5)


async def kill_busy_worker(workers: MediaWorkers, within_s: float = 10.0) -> int:
    """SIGKILL the child as soon as a call is running in it; its pid."""
    async with asyncio.timeout(within_s):
        while not workers._busy:  # noqa: ASYNC110 - polling: the pool has no event for it
            await asyncio.sleep(0.001)
    (worker,) = workers._busy
    pid = worker.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


async def test_a_probe_that_hangs_or_crashes_fails_only_that_upload(
    tmp_path: pathlib.Path,
) -> None:
    good = mp4(tmp_path / "good.mp4")
    async with running_stack(tmp_path / "data", analyzer={"media_workers": 1}) as stack:
        settings, workers = stack.analyzer.settings, stack.analyzer.workers
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{stack.analyzer.port}") as channel,
            httpx.AsyncClient(base_url=stack.bridge.http, timeout=30) as http,
        ):
            stub = apb_grpc.AnalyzerServiceStub(channel)
            # A hang: the probe outlives its limit and its child is killed.
            settings.probe_timeout_s = 0.001
            error = await refusal(grpc_upload(stub, good))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == (
                "INVALID_ARGUMENT: not a usable video: reading it took longer than 0.001 s"
            )
            response = await http.post("/api/videos", params={"name": "a.mp4"}, content=good)
            assert response.status_code == 400
            assert "took longer than 0.001 s" in response.json()["message"]
            settings.probe_timeout_s = 30.0
            # A crash: the child dies mid-call (SIGKILL, as a segfaulting decoder would).
            upload = asyncio.create_task(grpc_upload(stub, good))
            pid = await kill_busy_worker(workers)
            error = await refusal(upload)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.details() == (
                "INVALID_ARGUMENT: not a usable video: the decoder crashed reading it"
            )
            posted = asyncio.create_task(
                http.post("/api/videos", params={"name": "b.mp4"}, content=good)
            )
            assert await kill_busy_worker(workers) != pid
            response = await posted
            assert response.status_code == 400
            assert response.json() == {
                "code": "INVALID_ARGUMENT",
                "message": "not a usable video: the decoder crashed reading it",
            }
            assert stored(settings.videos_dir) == []
            # The service is unharmed: serving, and the next uploads are probed by a new child.
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            accepted = await grpc_upload(stub, good)
            assert accepted.video.frame_count == 20
            response = await http.post("/api/videos", params={"name": "c.mp4"}, content=good)
            assert response.status_code == 201, response.text


async def wait_done(stub: apb_grpc.AnalyzerServiceAsyncStub, job_id: str) -> apb.Job:
    async with asyncio.timeout(20):
        while True:
            job = (await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)).job
            if job.state not in (apb.JOB_STATE_QUEUED, apb.JOB_STATE_RUNNING):
                return job
            await asyncio.sleep(0.05)


async def test_a_decoder_crash_while_sampling_fails_only_that_job(tmp_path: pathlib.Path) -> None:
    good = mp4(tmp_path / "good.mp4")
    async with running_stack(tmp_path / "data", analyzer={"media_workers": 1}) as stack:
        workers = stack.analyzer.workers
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.analyzer.port}") as channel:
            stub = apb_grpc.AnalyzerServiceStub(channel)
            first = (await grpc_upload(stub, good)).video
            second = (await grpc_upload(stub, good)).video
            # The next call starts a fresh child, whose imports leave time to kill it mid-call.
            kill_idle_workers(workers)
            started = await stub.StartAnalysis(
                apb.StartAnalysisRequest(video_id=first.id), timeout=5
            )
            await kill_busy_worker(workers)
            crashed = await wait_done(stub, started.job.id)
            assert crashed.state == apb.JOB_STATE_FAILED
            assert (crashed.error.code, crashed.error.message) == (
                "DECODER_CRASHED",
                "the decoder crashed while reading frames",
            )
            # The next job, on the same service, runs to its end.
            again = await stub.StartAnalysis(
                apb.StartAnalysisRequest(video_id=second.id), timeout=5
            )
            done = await wait_done(stub, again.job.id)
            assert done.state == apb.JOB_STATE_SUCCEEDED, done.error
            assert len(done.result.frames) > 0
