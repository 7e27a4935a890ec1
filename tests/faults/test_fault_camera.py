"""Fault 5: camera streams (sources of kind stream) that freeze, refuse with 401, or send garbage.

One real detector and bridge; three MJPEG-over-HTTP cameras that misbehave on cue, each watched
by a WebSocket viewer of the bridge. Each fault must be visible within 5 s (state RECONNECTING
with ``last_error`` in GetSource, an error message to the viewer), the input must be retried
with a growing backoff (``counters.reconnects`` rising), and a camera that comes back must
deliver frames again to the same viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pathlib
import time
from collections.abc import Iterator

import grpc

from tests.faults.camera import FaultyCamera
from tests.faults.procs import (
    Message,
    ServiceProcess,
    Services,
    Viewer,
    eventually,
    viewer,
    wait_ready,
)
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

NOTICED_S = 5.0


@contextlib.contextmanager
def cameras(**modes: str) -> Iterator[dict[str, FaultyCamera]]:
    running = {name: FaultyCamera(mode) for name, mode in modes.items()}
    try:
        for camera in running.values():
            camera.start()
        yield running
    finally:
        for camera in running.values():
            camera.stop()


def attempts(requests: list[float]) -> list[float]:
    """Connection attempts: FFmpeg may send a second request at once (a retry of its own)."""
    starts: list[float] = []
    for at in requests:
        if not starts or at - starts[-1] > 0.2:
            starts.append(at)
    return starts


async def source(stub: dpb_grpc.DetectorServiceAsyncStub, name: str) -> dpb.Source:
    return (await stub.GetSource(dpb.GetSourceRequest(source_id=name), timeout=5)).source


async def first_error(view: Viewer, since: float, within_s: float) -> Message:
    async def probe() -> Message | None:
        errors = view.errors_after(since)
        return errors[0] if errors else None

    return await eventually(probe, within_s, "an error message to the viewer")


async def test_camera_faults_are_reported_retried_with_backoff_and_recovered(
    tmp_path: pathlib.Path,
) -> None:
    with cameras(frozen="ok", denied="unauthorized", garbage="garbage") as cams:
        async with Services(tmp_path) as services:
            detector = services.detector()
            bridge = services.bridge(detector=detector.address)
            await asyncio.gather(wait_ready(detector), wait_ready(bridge))
            async with grpc.aio.insecure_channel(detector.address) as channel:
                stub = dpb_grpc.DetectorServiceStub(channel)
                for name, camera in cams.items():
                    spec = dpb.SourceSpec(id=name, kind=dpb.SOURCE_KIND_STREAM, uri=camera.url)
                    await stub.AddSource(dpb.AddSourceRequest(source=spec), timeout=5)
                # Apart: OpenCV opens one FFmpeg input at a time per process, so a camera that
                # hangs its open (frozen, garbage) delays the others' retries (see the report).
                await _denied(stub, bridge, cams["denied"])
                await _frozen_and_garbage(stub, bridge, cams)


async def _denied(
    stub: dpb_grpc.DetectorServiceAsyncStub, bridge: ServiceProcess, camera: FaultyCamera
) -> None:
    async with viewer(bridge, "/ws/video-stream/denied") as view:
        opened = time.monotonic()
        error = await first_error(view, opened, NOTICED_S)
        assert error.data["code"] == "SOURCE_RECONNECTING", error.data
        snapshot = await source(stub, "denied")
        assert snapshot.state == dpb.SOURCE_STATE_RECONNECTING, snapshot
        assert "cannot open" in snapshot.last_error, snapshot

        # Retried with a growing backoff: 0.5, 1, 2, 4 s.
        async def retried() -> bool:
            return len(attempts(camera.requests)) >= 5

        def requests() -> str:
            return f"requests at {[round(at - opened, 2) for at in camera.requests]}"

        await eventually(retried, 15.0, "five attempts", interval=0.2, log=requests)
        starts = attempts(camera.requests)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(later > 1.5 * early for early, later in itertools.pairwise(gaps)), gaps
        assert (await source(stub, "denied")).counters.reconnects >= 4
        assert view.closed_at is None
    # Nobody watches any more: the source stops retrying (after its linger).
    await stub.RemoveSource(dpb.RemoveSourceRequest(source_id="denied"), timeout=5)


async def _frozen_and_garbage(
    stub: dpb_grpc.DetectorServiceAsyncStub, bridge: ServiceProcess, cams: dict[str, FaultyCamera]
) -> None:
    async with (
        viewer(bridge, "/ws/video-stream/frozen") as frozen_view,
        viewer(bridge, "/ws/video-stream/garbage") as garbage_view,
    ):
        opened = time.monotonic()

        async def frozen_frame() -> bool:
            return bool(frozen_view.frames_after(opened))

        await eventually(frozen_frame, 10.0, "frames from the camera before it freezes")
        cams["frozen"].mode = "stall"
        frozen = time.monotonic()

        # Each fault is told to its viewer within 5 s, and GetSource says why.
        for name, view, since in (
            ("garbage", garbage_view, opened),
            ("frozen", frozen_view, frozen),
        ):
            error = await first_error(view, since, NOTICED_S + 1.0)
            assert error.data["code"] == "SOURCE_RECONNECTING", (name, error.data)
            assert error.at - since <= NOTICED_S, (name, error.at - since)
            snapshot = await source(stub, name)
            assert snapshot.state == dpb.SOURCE_STATE_RECONNECTING, (name, snapshot)
            assert snapshot.last_error, (name, snapshot)

        # Both are reopened: a read that never yields a picture times out.
        async def reopened() -> bool:
            counts = [(await source(stub, n)).counters.reconnects for n in ("frozen", "garbage")]
            return all(count >= 1 for count in counts)

        await eventually(reopened, 10.0, "the frozen and garbage cameras reopened")

        # The frozen camera comes back: frames again on the same WebSocket, state LIVE.
        cams["frozen"].mode = "ok"
        back = time.monotonic()

        async def frames_again() -> bool:
            return bool(frozen_view.frames_after(back))

        await eventually(frames_again, 12.0, "frames after the camera came back")
        assert (await source(stub, "frozen")).state == dpb.SOURCE_STATE_LIVE
        assert not garbage_view.frames_after(opened)
        assert frozen_view.closed_at is None
        assert garbage_view.closed_at is None
