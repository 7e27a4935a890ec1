"""``vigil bench always-on``: N always-on 720p15 RTSP cameras on one detector with the offline
YOLO, a few of them seeing motion at a time, everything else still (issue 14).

Two GStreamer RTSP cameras (``RtspCamera``, one shared live H.264 encoder per mount, so the
cameras' own cost stays small): a still scene, watched by the N - M still sources, and a scene
that is still for ``STILL_S`` then shows an object crossing for ``MOVE_S``, looped, watched by
the M moving ones. The detector runs as its own process (``vigil.loadgen.spawn``, started by
``vigil.launcher``) and is measured from ``/proc``; everything else goes through the SDK.

Figures:

- CPU (cores, from the process's utime + stime) and memory (RSS beyond the warmed-up base) per
  source, all N sources live;
- detection fps of each moving source while its object is in view (frames the model ran on:
  ``inference_ms`` > 0), and motion-to-first-detection latency (from the capture of the first
  frame showing the object to the arrival of the first frame the model ran on);
- recording gaps per source over the measured window (``GetCoverage``; "not available" where
  the service does not record yet);
- CPU of one still source with motion gating over the same source with every frame detected
  (``MotionSettings.detect_every_frame``), each measured alone beside an idle baseline.

Goals (figures, not promises: ``passed`` is not set): at least ``GOAL_SOURCES`` sources recorded
without gaps while two at a time see motion and are detected at ``GOAL_FPS`` or more; the CPU
ratio at most ``GOAL_RATIO``. The verdicts say how far off a missed goal is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from vigil.sdk import AsyncDetectorClient

SOURCES = 16
MOVING = 2
W, H, FPS = 1280, 720, 15
STILL_S, MOVE_S = 4.0, 4.0
GOAL_SOURCES = 16
GOAL_FPS = 5.0
GOAL_RATIO = 0.1
# Uncovered time in the window a source may have and still count as recorded without gaps.
GAP_TOLERANCE_S = 1.0
# The crossing object's colour (BGR), told apart from the still scene on each published frame.
MARKER = (0, 200, 255)


def write_scenes(directory: pathlib.Path) -> tuple[str, str]:
    """JPEG files for the two cameras: a still scene, and the same scene with a crossing object."""
    import cv2
    import numpy as np

    ramp = np.linspace(50, 170, W, dtype=np.float32)[None, :, None]
    still = np.ascontiguousarray(np.broadcast_to(ramp, (H, W, 3)).astype(np.uint8))
    # Furniture: edges and texture that the camera's encoder and the motion detector must live with.
    for n in range(6):
        x = 60 + n * 200
        cv2.rectangle(still, (x, 420), (x + 140, 640), (90 + 20 * n, 80, 70), -1)
        cv2.putText(still, f"{n}", (x + 40, 560), cv2.FONT_HERSHEY_SIMPLEX, 3, (230, 230, 230), 5)
    (directory / "still").mkdir()
    cv2.imwrite(str(directory / "still" / "00000.jpg"), still, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (directory / "moving").mkdir()
    frames = [still] * round(STILL_S * FPS)
    steps = round(MOVE_S * FPS)
    for n in range(steps):
        image = still.copy()
        x = 40 + n * (W - 200) // steps
        cv2.rectangle(image, (x, 200), (x + 120, 400), MARKER, -1)
        frames.append(image)
    for n, image in enumerate(frames):
        path = directory / "moving" / f"{n:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return str(directory / "still" / "%05d.jpg"), str(directory / "moving" / "%05d.jpg")


def shows_marker(jpeg: bytes) -> bool:
    """Whether a published frame shows the crossing object (decoded at 1/8 size: cheap)."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
    if image is None:
        return False
    b, g, r = (image[:, :, i].astype(np.int16) for i in range(3))
    near = (abs(b - MARKER[0]) < 60) & (abs(g - MARKER[1]) < 50) & (abs(r - MARKER[2]) < 50)
    return int(near.sum()) >= 20


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used, all its threads included."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cores_over(pid: int, seconds: float) -> float:
    """Mean cores the process kept busy over the next ``seconds``."""
    start_cpu, start = cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_s(pid) - start_cpu) / (time.monotonic() - start)


@dataclass
class Watch:
    """What one moving source's frames showed: frames (capture s, arrival s, shown, detected)."""

    frames: list[tuple[float, float, bool, bool]] = field(default_factory=list)

    def figures(self) -> tuple[float | None, list[float]]:
        """Detection fps while the object is in view, and the latency of each onset seen."""
        detected = 0
        in_view_s = 0.0
        latencies: list[float] = []
        run: list[tuple[float, float, bool, bool]] = []
        # A run of frames showing the object; the first run may have begun before we looked.
        for n, frame in enumerate([*self.frames, (0.0, 0.0, False, False)]):
            if frame[2]:
                run.append(frame)
                continue
            if len(run) > 1:
                detected += sum(1 for f in run if f[3])
                in_view_s += run[-1][0] - run[0][0] + 1 / FPS
                first = next((f for f in run if f[3]), None)
                if first is not None and n > len(run):  # an onset we saw: it has a frame before
                    latencies.append(first[1] - run[0][0])
            run = []
        return (detected / in_view_s if in_view_s else None), latencies


async def follow(detector: AsyncDetectorClient, source_id: str, watch: Watch) -> None:
    from vigil.sdk import Frame

    async for item in detector.subscribe(source_id):
        if isinstance(item, Frame):
            arrived = time.time()
            watch.frames.append(
                (item.timestamp, arrived, shows_marker(item.jpeg), item.inference_ms > 0)
            )


async def add(detector: AsyncDetectorClient, source_id: str, url: str, every: bool) -> None:
    from vigil.detector.v1 import detector_service_pb2 as pb

    if not every:
        await detector.add_source(source_id, "stream", url, mode="always", timeout_s=10)
        return
    # The SDK's add_source has no motion settings yet: the one yardstick source goes raw.
    spec = pb.SourceSpec(
        id=source_id,
        kind=pb.SOURCE_KIND_STREAM,
        uri=url,
        mode=pb.SOURCE_MODE_ALWAYS,
        motion=pb.MotionSettings(detect_every_frame=True),
    )
    await detector.stub.AddSource(pb.AddSourceRequest(source=spec), timeout=10)


async def gaps(detector: AsyncDetectorClient, source_id: str, start: float, end: float) -> float:
    """Seconds of [start, end] not covered by the source's recording (raises when unavailable)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    from vigil.detector.v1 import detector_service_pb2 as pb

    first, last = Timestamp(), Timestamp()
    first.FromNanoseconds(int(start * 1e9))
    last.FromNanoseconds(int(end * 1e9))
    request = pb.GetCoverageRequest(source_id=source_id, start=first, end=last)
    answer = await detector.stub.GetCoverage(request, timeout=10)
    covered = 0.0
    for r in answer.ranges:
        lo = max(r.start.ToNanoseconds() / 1e9, start)
        hi = min(r.end.ToNanoseconds() / 1e9 if r.HasField("end") else end, end)
        covered += max(hi - lo, 0.0)
    return max(end - start - covered, 0.0)


async def ratio_phase(
    detector: AsyncDetectorClient, pid: int, still_url: str, settle_s: float, seconds: float
) -> dict[str, Any]:
    idle = await cores_over(pid, seconds)
    cost = {}
    for source_id, every in (("r-gated", False), ("r-every", True)):
        await add(detector, source_id, still_url, every)
        await asyncio.sleep(settle_s)
        cost[source_id] = max(await cores_over(pid, seconds) - idle, 0.0)
        counters = (await detector.get_source(source_id)).counters
        cost[f"{source_id}-fps"] = counters.fps_out
        await detector.remove_source(source_id, timeout_s=10)
    ratio = cost["r-gated"] / cost["r-every"] if cost["r-every"] else None
    # Where the model cannot keep up with every frame, the yardstick runs slower than the gated
    # source: the same ratio per published frame says what it would cost at the same rate.
    per_frame = None
    if ratio is not None and cost["r-gated-fps"] and cost["r-every-fps"]:
        per_frame = ratio * cost["r-every-fps"] / cost["r-gated-fps"]
    return {
        "idle_cores": round(idle, 3),
        "still_gated_cores": round(cost["r-gated"], 3),
        "still_gated_fps": round(cost["r-gated-fps"], 1),
        "still_every_frame_cores": round(cost["r-every"], 3),
        "still_every_frame_fps": round(cost["r-every-fps"], 1),
        "gated_to_every_frame_ratio": None if ratio is None else round(ratio, 3),
        "gated_to_every_frame_ratio_per_frame": None if per_frame is None else round(per_frame, 3),
    }


async def main_phase(
    detector: AsyncDetectorClient,
    pid: int,
    urls: tuple[str, str],
    count: tuple[int, int],
    settle_s: float,
    seconds: float,
) -> dict[str, Any]:
    from vigil.bench.source_memory import rss_mb

    still_ids = [f"s{n}" for n in range(count[0] - count[1])]
    moving_ids = [f"m{n}" for n in range(count[1])]
    base_rss = rss_mb(pid)
    for source_id in still_ids:
        await add(detector, source_id, urls[0], every=False)
    for source_id in moving_ids:
        await add(detector, source_id, urls[1], every=False)
    watches = {source_id: Watch() for source_id in moving_ids}
    tasks = [asyncio.create_task(follow(detector, i, w)) for i, w in watches.items()]
    try:
        await asyncio.sleep(settle_s)
        for watch in watches.values():
            watch.frames.clear()
        start = time.time()
        cores = await cores_over(pid, seconds)
        end = time.time()
        rss = rss_mb(pid)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sources = {i: await detector.get_source(i) for i in still_ids + moving_ids}
    uncovered: dict[str, float] | None
    try:
        uncovered = {i: await gaps(detector, i, start, end) for i in sources}
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        uncovered = None  # the service does not record (yet)
    for source_id in sources:
        await detector.remove_source(source_id, timeout_s=10)
    fps: list[float] = []
    latencies: list[float] = []
    for watch in watches.values():
        rate, onsets = watch.figures()
        fps.append(rate or 0.0)
        latencies += onsets
    n = len(sources)
    still_counters = [sources[i].counters for i in still_ids]
    return {
        "cores_per_source": round(cores / n, 3),
        "rss_mb_per_source": round((rss - base_rss) / n, 1),
        "sources_live": sum(1 for s in sources.values() if s.state == "live"),
        "min_fps_in": round(min(s.counters.fps_in for s in sources.values()), 1),
        "still_frames_skipped": sum(c.frames_skipped for c in still_counters),
        "still_frames_detected": sum(c.frames_detected for c in still_counters),
        "moving_detection_fps": [round(f, 1) for f in fps],
        "motion_to_detection_s": [round(s, 3) for s in sorted(latencies)],
        "uncovered_s": None
        if uncovered is None
        else {k: round(v, 2) for k, v in uncovered.items()},
    }


def verdicts(count: int, figures: dict[str, Any]) -> dict[str, Any]:
    fps = figures["moving_detection_fps"]
    slowest = min(fps) if fps else 0.0
    uncovered = figures["uncovered_s"]
    if uncovered is None:
        recorded = "recording: not available"
        whole = figures["sources_live"]
        kind = "live (recording not available)"
    else:
        whole = sum(1 for v in uncovered.values() if v <= GAP_TOLERANCE_S)
        recorded = f"{whole} of {count} without gaps (≤ {GAP_TOLERANCE_S:g} s uncovered)"
        kind = "recorded without gaps"
    sources_met = whole >= GOAL_SOURCES and slowest >= GOAL_FPS
    ratio = figures["gated_to_every_frame_ratio"]
    ratio_met = ratio is not None and ratio <= GOAL_RATIO
    return {
        "recording": recorded,
        "goal_sources": (
            f"{'met' if sources_met else 'missed'}: {whole} sources {kind} of {GOAL_SOURCES} "
            f"wanted; slowest moving source detected at {slowest:.1f} fps of {GOAL_FPS:g} "
            f"({slowest / GOAL_FPS:.0%})"
        ),
        "goal_ratio": (
            "missed: no ratio (the every-frame source cost nothing measurable)"
            if ratio is None
            else f"{'met' if ratio_met else 'missed'}: {ratio:.3f} against ≤ {GOAL_RATIO:g} "
            f"({ratio / GOAL_RATIO:.1f}x the goal; per published frame "
            f"{figures['gated_to_every_frame_ratio_per_frame']})"
        ),
    }


async def measure(
    address: str, pid: int, urls: tuple[str, str], options: dict[str, Any]
) -> dict[str, Any]:
    from vigil.sdk import AsyncDetectorClient

    count = int(options.get("sources", SOURCES))
    moving = min(int(options.get("moving", MOVING)), count)
    seconds = float(options.get("duration", 30.0))
    # Sources start, calibrate and settle before anything is measured.
    settle_s = float(options.get("settle_s", max(3.0, min(8.0, seconds))))
    async with AsyncDetectorClient(address) as detector:
        ratio = await ratio_phase(detector, pid, urls[0], settle_s, min(seconds, 15.0))
        figures = await main_phase(detector, pid, urls, (count, moving), settle_s, seconds)
    return ratio | figures


def run(options: dict[str, Any]) -> dict[str, Any]:
    from vigil.bench.rtsp import RtspCamera
    from vigil.loadgen import spawn

    count = int(options.get("sources", SOURCES))
    moving = min(int(options.get("moving", MOVING)), count)
    env = {"VIGIL_DETECTOR_BACKEND": os.environ.get("VIGIL_DETECTOR_BACKEND", "yolo")}
    with tempfile.TemporaryDirectory(prefix="vigil-always-on-") as tmp:
        still, scene = write_scenes(pathlib.Path(tmp))
        cameras = [
            RtspCamera((name,), width=W, height=H, fps=FPS, keyframe_s=2.0, frames=frames)
            for name, frames in (("still", still), ("moving", scene))
        ]
        with contextlib.ExitStack() as stack:
            for camera in cameras:
                stack.enter_context(camera)
            urls = (cameras[0].url(), cameras[1].url())
            with spawn.processes(("detector",), env=env) as services:
                figures = asyncio.run(
                    measure(services.detector, services.pids["detector"], urls, options)
                )
    return {
        "name": "always-on",
        "setup": (
            f"{count} always-on {W}x{H} RTSP cameras at {FPS} fps, {moving} seeing motion "
            f"{MOVE_S:g} s in every {STILL_S + MOVE_S:g} s, {env['VIGIL_DETECTOR_BACKEND']} on "
            f"{os.cpu_count()} CPUs"
        ),
        **figures,
        **verdicts(count, figures),
    }
