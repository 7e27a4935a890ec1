"""Faults 1 and 2: the detector killed or frozen under live viewers of the bridge.

Real processes: ``python -m detector_service`` (no model, its test-pattern source) and
``python -m bridge`` with its production retry and keepalive settings; a WebSocket viewer of
``/ws/video-stream`` that does nothing but read.
"""

from __future__ import annotations

import asyncio
import pathlib
import signal
import time

import httpx

from tests.faults.procs import (
    Message,
    Services,
    Viewer,
    eventually,
    viewer,
    wait_ready,
)

# The bridge's promise for a frozen detector: its gRPC keepalive pings every 6 s and gives 4 s
# for the answer (``vigil.core.channels.GATEWAY_KEEPALIVE_*``), so at most 10 s; 2 s more for a
# loaded machine.
FROZEN_NOTICED_S = 12.0


async def first_error(view: Viewer, since: float, within_s: float) -> Message:
    async def probe() -> Message | None:
        errors = view.errors_after(since)
        return errors[0] if errors else None

    return await eventually(probe, within_s, "an error message to the viewer")


async def first_frame(view: Viewer, since: float, within_s: float) -> Message:
    async def probe() -> Message | None:
        frames = view.frames_after(since)
        return frames[0] if frames else None

    return await eventually(probe, within_s, "a frame for the viewer")


async def test_killed_detector_viewers_get_an_error_then_frames_resume(
    tmp_path: pathlib.Path,
) -> None:
    async with Services(tmp_path) as services:
        detector = services.detector()
        bridge = services.bridge(detector=detector.address)
        await asyncio.gather(wait_ready(detector), wait_ready(bridge))
        async with viewer(bridge) as view:
            await first_frame(view, 0.0, 15.0)

            detector.signal(signal.SIGKILL)
            killed = time.monotonic()
            error = await first_error(view, killed, 2.0)
            assert error.at - killed <= 2.0
            assert error.data["code"] == "UNAVAILABLE", error.data
            await detector.wait_exit(5)

            detector.start()  # same port, same settings
            await wait_ready(detector)
            restarted = time.monotonic()
            frame = await first_frame(view, restarted, 10.0)
            # The same WebSocket, never closed, with nothing sent by the viewer.
            assert view.closed_at is None
            print(
                f"error {error.at - killed:.2f} s after SIGKILL; frames "
                f"{frame.at - restarted:.2f} s after the restarted detector was SERVING"
            )


async def test_frozen_detector_is_noticed_by_keepalive_and_recovers(
    tmp_path: pathlib.Path,
) -> None:
    async with Services(tmp_path) as services:
        detector = services.detector()
        bridge = services.bridge(detector=detector.address)
        await asyncio.gather(wait_ready(detector), wait_ready(bridge))
        ready = f"http://127.0.0.1:{bridge.port}/ready"
        async with viewer(bridge) as view, httpx.AsyncClient(timeout=5.0) as http:
            await first_frame(view, 0.0, 15.0)

            detector.signal(signal.SIGSTOP)
            frozen = time.monotonic()
            # Readiness reports it at once: the health check has a deadline.
            response = await http.get(ready)
            assert response.status_code == 503, response.text
            assert response.json()["services"]["detector"] == "UNREACHABLE"
            # The open stream gets no error from the frozen process; keepalive must notice.
            error = await first_error(view, frozen, FROZEN_NOTICED_S)
            assert error.data["code"] == "UNAVAILABLE", error.data
            noticed = error.at - frozen

            detector.signal(signal.SIGCONT)
            resumed = time.monotonic()
            frame = await first_frame(view, resumed, 15.0)

            async def ready_again() -> bool:
                state: str = (await http.get(ready)).json()["services"]["detector"]
                return state == "SERVING"

            await eventually(ready_again, 10.0, "the detector SERVING in /ready")
            assert view.closed_at is None
            print(
                f"frozen detector noticed after {noticed:.2f} s; frames "
                f"{frame.at - resumed:.2f} s after SIGCONT"
            )
