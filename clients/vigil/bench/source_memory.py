"""Memory per source, and how soon N live RTSP cameras stream when their viewers arrive together.

A GStreamer RTSP server (``RtspCamera``: one live H.264 encoder per mount, a keyframe every 2 s)
serves N cameras; a fresh detector process gets one stream source per camera. Measured from the
detector's ``/proc/PID/status``: its RSS at start, once its model has run on a few frames of the
test pattern (the base), after the N sources are added
(idle), and once all N stream to one viewer each. The viewers all subscribe at the same moment,
and each source's time from its Subscribe to its first frame is kept.

Promises: at most ``MEMORY_TARGET_MB`` per streaming source beyond the base, and every source's
first frame within ``FIRST_FRAME_TARGET_S`` of its viewer arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

MEMORY_TARGET_MB = 60.0
FIRST_FRAME_TARGET_S = 5.0
CAMERAS = 16


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _settled_rss(pid: int, settle_s: float) -> float:
    # RSS after a short quiet spell: allocations made just before the reading have landed.
    await asyncio.sleep(settle_s)
    return rss_mb(pid)


async def _measure(address: str, pid: int, urls: list[str], settle_s: float) -> dict[str, Any]:
    from vigil.sdk import AsyncDetectorClient, Frame

    ids = [f"bench-rtsp-{n}" for n in range(len(urls))]
    first_frame_s: dict[str, float] = {}
    frames = dict.fromkeys(ids, 0)
    all_streaming = asyncio.Event()
    async with AsyncDetectorClient(address) as detector:
        cold = await _settled_rss(pid, settle_s)
        # The base is the process once its model has run: the first inference allocates the
        # model's working memory for good (OpenCV's DNN: ~255 MB), which no source adds to.
        seen = 0
        async with detector.subscribe("default", omit_jpeg=True) as warm_up:
            async for item in warm_up:
                seen += isinstance(item, Frame)
                if seen == 3:
                    break
        base = await _settled_rss(pid, settle_s)
        for source_id, url in zip(ids, urls, strict=True):
            # On demand: the figures are of idle sources and of viewers arriving together.
            await detector.add_source(source_id, "stream", url, mode="on_demand", timeout_s=10)
        idle = await _settled_rss(pid, settle_s)

        async def view(source_id: str) -> None:
            arrived = time.monotonic()
            async for item in detector.subscribe(source_id, omit_jpeg=True):
                if isinstance(item, Frame):
                    frames[source_id] += 1
                    first_frame_s.setdefault(source_id, time.monotonic() - arrived)
                    if len(first_frame_s) == len(ids):
                        all_streaming.set()

        tasks = [asyncio.create_task(view(source_id)) for source_id in ids]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_streaming.wait(), 60)
            streaming = await _settled_rss(pid, settle_s)
            streaming_frames = dict(frames)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for source_id in ids:
                await detector.remove_source(source_id, timeout_s=10)
    count = len(ids)
    times = sorted(first_frame_s.values())
    per_streaming = (streaming - base) / count
    slowest = times[-1] if len(times) == count else float("inf")
    return {
        "cold_rss_mb": round(cold, 1),
        "base_rss_mb": round(base, 1),
        "idle_rss_mb_per_source": round((idle - base) / count, 2),
        "streaming_rss_mb_per_source": round(per_streaming, 1),
        "streaming_rss_target_mb": MEMORY_TARGET_MB,
        "streaming_rss_ratio": round(per_streaming / MEMORY_TARGET_MB, 2),
        "sources_streaming": sum(1 for n in streaming_frames.values() if n),
        "first_frame_s_median": round(times[len(times) // 2], 2) if times else None,
        "first_frame_s_slowest": round(slowest, 2),
        "first_frame_target_s": FIRST_FRAME_TARGET_S,
        "memory_held": per_streaming <= MEMORY_TARGET_MB,
        "all_streaming_in_time": slowest <= FIRST_FRAME_TARGET_S,
    }


def run(options: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    from vigil.bench.rtsp import RtspCamera
    from vigil.loadgen import spawn

    count = int(options.get("rtsp_cameras", CAMERAS))
    width, height = options.get("rtsp_size", (1280, 720))
    settle_s = float(options.get("settle_s", 3.0))
    mounts = tuple(f"cam{n}" for n in range(count))
    camera = RtspCamera(mounts, width=width, height=height, fps=15, keyframe_s=2.0)
    with camera, spawn.processes(("detector",), env=env) as services:
        urls = [camera.url(mount) for mount in mounts]
        figures = asyncio.run(
            _measure(services.detector, services.pids["detector"], urls, settle_s)
        )
    return {"rtsp_cameras": f"{count} x {width}x{height} H.264 at 15 fps, keyframe every 2 s"} | (
        figures
    )
