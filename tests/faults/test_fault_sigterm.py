"""Fault 7: SIGTERM on each service while work is in flight.

Each service must say NOT_SERVING at once (gRPC health, watched over ``Health.Watch``; the
bridge stops taking connections), let the work in flight finish within its grace period (a
``Detect`` stream, a gRPC upload, an HTTP upload through the bridge), and exit 0 within the grace
period plus a few seconds. The services run with ``grace_s`` = 3. An analysis is longer than any
grace period: a job running at SIGTERM is left for the next start, which runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import cv2
import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.faults.analyses import analyzer_stub, history, terminal, upload, video
from tests.faults.procs import (
    ServiceProcess,
    Services,
    Viewer,
    eventually,
    viewer,
    wait_ready,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

GRACE_S = 3.0
EXIT_WITHIN_S = GRACE_S + 4.0
NOT_SERVING_WITHIN_S = 1.0


class HealthWatch:
    """Follows ``Health.Watch`` of a service and records (time, status) as they come."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.seen: list[tuple[float, str]] = []
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for response in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
                self.seen.append((time.monotonic(), name))

    async def first(self, status: str, within_s: float) -> float:
        async def probe() -> float | None:
            return next((at for at, name in self.seen if name == status), None)

        return await eventually(probe, within_s, f"health {status} ({self.seen})")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.channel.close(None)


@contextlib.asynccontextmanager
async def health_watch(proc: ServiceProcess) -> AsyncIterator[HealthWatch]:
    watch = HealthWatch(proc.address)
    try:
        await watch.first("SERVING", 5.0)
        yield watch
    finally:
        await watch.close()


async def terminate(proc: ServiceProcess) -> float:
    proc.signal(signal.SIGTERM)
    return time.monotonic()


async def exits_cleanly(proc: ServiceProcess, since: float) -> None:
    rc = await proc.wait_exit(EXIT_WITHIN_S)
    assert rc == 0, proc.log()
    assert time.monotonic() - since <= EXIT_WITHIN_S


def jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((96, 128, 3), 90, np.uint8))
    assert ok
    return bytes(buf.tobytes())


async def test_sigterm_detector_drains_a_detect_stream(tmp_path: pathlib.Path) -> None:
    async with Services(tmp_path) as services:
        detector = services.detector()
        await wait_ready(detector)
        async with (
            health_watch(detector) as watch,
            grpc.aio.insecure_channel(detector.address) as channel,
        ):
            pending: asyncio.Queue[bytes | None] = asyncio.Queue()

            async def requests() -> AsyncIterator[dpb.DetectRequest]:
                sequence = 0
                while (data := await pending.get()) is not None:
                    sequence += 1
                    yield dpb.DetectRequest(source_id="drain", sequence=sequence, jpeg=data)

            call = dpb_grpc.DetectorServiceStub(channel).Detect(requests())
            received: list[dpb.DetectResponse] = []

            async def read() -> None:
                async for response in call:
                    received.append(response)

            reader = asyncio.create_task(read())
            for _ in range(3):
                pending.put_nowait(jpeg())
            await eventually(lambda: _count(received, 3), 10.0, "the first answers")

            stopped = await terminate(detector)
            not_serving = await watch.first("NOT_SERVING", NOT_SERVING_WITHIN_S + 1)
            assert not_serving - stopped <= NOT_SERVING_WITHIN_S
            # The stream in flight goes on: more frames, all answered, then it ends cleanly.
            for _ in range(5):
                pending.put_nowait(jpeg())
                await asyncio.sleep(0.1)
            pending.put_nowait(None)
            await asyncio.wait_for(reader, GRACE_S)
            assert [r.sequence for r in received] == list(range(1, 9))
            assert not any(r.HasField("error") for r in received)
        await exits_cleanly(detector, stopped)


async def _count(items: list[dpb.DetectResponse], n: int) -> bool:
    return len(items) >= n


async def test_sigterm_analyzer_drains_an_upload(tmp_path: pathlib.Path) -> None:
    data = video(frames=250, gop=25)
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    assert len(chunks) >= 4
    async with Services(tmp_path) as services:
        analyzer = services.analyzer()
        await wait_ready(analyzer)
        async with (
            health_watch(analyzer) as watch,
            grpc.aio.insecure_channel(analyzer.address) as channel,
        ):
            half = asyncio.Event()
            go_on = asyncio.Event()

            async def requests() -> AsyncIterator[apb.UploadVideoRequest]:
                header = apb.UploadHeader(name="drain.mp4", size=len(data))
                yield apb.UploadVideoRequest(header=header)
                for n, chunk in enumerate(chunks):
                    if n == len(chunks) // 2:
                        half.set()
                        await go_on.wait()
                    yield apb.UploadVideoRequest(chunk=chunk)

            stub = apb_grpc.AnalyzerServiceStub(channel)
            uploading = asyncio.ensure_future(stub.UploadVideo(requests(), timeout=30))
            await asyncio.wait_for(half.wait(), 10)
            # In flight means the service took the call and holds part of the file (a call that
            # the server has not yet handed to the service when it stops is cancelled instead).
            videos = tmp_path / "analyzer" / "videos"

            async def receiving() -> bool:
                return any(part.stat().st_size > 0 for part in videos.glob("*.part"))

            await eventually(receiving, 10.0, "the upload being received", interval=0.02)
            stopped = await terminate(analyzer)
            not_serving = await watch.first("NOT_SERVING", NOT_SERVING_WITHIN_S + 1)
            assert not_serving - stopped <= NOT_SERVING_WITHIN_S
            await asyncio.sleep(0.3)
            go_on.set()
            response = await asyncio.wait_for(uploading, GRACE_S)
            assert response.video.size == len(data)
            assert response.video.frame_count == 250
        await exits_cleanly(analyzer, stopped)
        assert (tmp_path / "analyzer" / "videos" / response.video.id).stat().st_size == len(data)


async def test_sigterm_analyzer_mid_job_exits_and_the_next_start_runs_the_job_again(
    tmp_path: pathlib.Path,
) -> None:
    # A long-GOP video sampled at 256 times, each seek decoding from its one keyframe: ~10 s on
    # two cores (64 seeks once finished inside the 3 s grace period on a fast run).
    data = video(frames=1500, gop=1500)
    async with Services(tmp_path) as services:
        analyzer = services.analyzer(VIGIL_ANALYZER_MAX_FRAMES_LIMIT="256")
        await wait_ready(analyzer)
        async with health_watch(analyzer) as watch, analyzer_stub(analyzer.address) as stub:
            job_id = (await upload(stub, data, start=True, frames=256)).job.id
            seen: list[apb.StreamAnalysisEventsResponse] = []
            follow = stub.StreamAnalysisEvents(apb.StreamAnalysisEventsRequest(job_id=job_id))

            async def read() -> None:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    async for event in follow:
                        seen.append(event)

            reader = asyncio.create_task(read())

            async def extracting() -> bool:
                return any(e.progress.stage == apb.STAGE_EXTRACTING_FRAMES for e in seen)

            await eventually(extracting, 15.0, "the job extracting frames")
            stopped = await terminate(analyzer)
            not_serving = await watch.first("NOT_SERVING", NOT_SERVING_WITHIN_S + 1)
            assert not_serving - stopped <= NOT_SERVING_WITHIN_S
            # The follower's stream ends with the service; no outcome was made up for the job.
            await asyncio.wait_for(reader, EXIT_WITHIN_S)
            assert terminal(seen) == []
        await exits_cleanly(analyzer, stopped)

        analyzer.start()
        await wait_ready(analyzer)
        async with analyzer_stub(analyzer.address) as stub:
            events = await history(stub, job_id)
            job = (await stub.GetJob(apb.GetJobRequest(job_id=job_id), timeout=5)).job
            jobs = (await stub.ListJobs(apb.ListJobsRequest(), timeout=5)).jobs
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert terminal(events) == ["complete"], [e.WhichOneof("event") for e in events]
    assert [e.SerializeToString() for e in events[: len(seen)]] == [
        e.SerializeToString() for e in seen
    ]
    assert (job.state, job.attempts) == (apb.JOB_STATE_SUCCEEDED, 2), job
    assert [j.id for j in jobs] == [job_id]


async def test_sigterm_bridge_drains_an_upload_and_lets_viewers_go(
    tmp_path: pathlib.Path,
) -> None:
    data = video(frames=250, gop=25)
    piece = 16 * 1024
    async with Services(tmp_path) as services:
        detector = services.detector()
        analyzer = services.analyzer()
        bridge = services.bridge(
            detector=detector.address, analyzer=analyzer.address, VIGIL_BRIDGE_GRACE_S=str(GRACE_S)
        )
        await asyncio.gather(wait_ready(detector), wait_ready(analyzer), wait_ready(bridge))
        base = f"http://127.0.0.1:{bridge.port}"
        half = asyncio.Event()
        go_on = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for offset in range(0, len(data), piece):
                if offset >= len(data) // 2 and not half.is_set():
                    half.set()
                    await go_on.wait()
                yield data[offset : offset + piece]

        async with viewer(bridge) as view, httpx.AsyncClient(timeout=20) as http:

            async def frame() -> bool:
                return bool(view.frames_after(0.0))

            await eventually(frame, 15.0, "a frame for the viewer")
            uploading = asyncio.ensure_future(
                http.post(
                    f"{base}/api/videos",
                    params={"name": "drain.mp4"},
                    content=body(),
                    headers={
                        "content-length": str(len(data)),
                        "content-type": "application/octet-stream",
                    },
                )
            )
            await asyncio.wait_for(half.wait(), 10)
            stopped = await terminate(bridge)

            # No new connections: the listener is closed at once.
            async def refused() -> bool:
                try:
                    async with httpx.AsyncClient(timeout=1) as fresh:
                        await fresh.get(f"{base}/health")
                except httpx.TransportError:
                    return True
                return False

            await eventually(refused, NOT_SERVING_WITHIN_S + 1, "the bridge refusing /health")
            go_on.set()
            response = await asyncio.wait_for(uploading, GRACE_S + 2)
            assert response.status_code == 201, response.text
            assert response.json()["video"]["size"] == len(data)
            # The viewer is let go (closed), not left hanging.
            await eventually(_closed(view), EXIT_WITHIN_S, "the viewer's socket closed")
        await exits_cleanly(bridge, stopped)


def _closed(view: Viewer) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return view.closed_at is not None

    return probe
