"""Run one scenario against running services and build its report.

The load test makes its own live sources (test pattern at ``source_fps``): one for the gRPC
subscribers and one for the WebSocket viewers, so the detector's counters of each source can be
set against what each client class saw. They are removed afterwards unless ``keep_sources``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from typing import Any

from vigil.core.errors import Unavailable
from vigil.loadgen import clients, media
from vigil.loadgen.resources import Tracker
from vigil.loadgen.scenario import Scenario
from vigil.loadgen.stats import ClientStats, class_report
from vigil.sdk import AsyncDetectorClient, Source

# Sources placed on replicas: unmoved over this many polls, this far apart.
PLACED_POLLS = 4
PLACED_EVERY_S = 1.0
_METRIC = re.compile(r'^(vigil_bridge_frames_(?:sent|dropped))_total\{source="([^"]+)"\} (\S+)$')


def bridge_frame_counters(bridge: str, source_id: str) -> dict[str, float]:
    """The bridge's own frames_sent / frames_dropped counters for one source, from /metrics."""
    out = {"frames_sent": 0.0, "frames_dropped": 0.0}
    try:
        with urllib.request.urlopen(f"{bridge}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match and match.group(2) == source_id:
            out[match.group(1).removeprefix("vigil_bridge_")] = float(match.group(3))
    return out


def counters(source: Source) -> dict[str, float | int]:
    c = source.counters
    return {
        "frames_published": c.frames_published,
        "frames_dropped": c.frames_dropped,
        "fps_out": round(c.fps_out, 2),
        "subscribers": c.subscribers,
    }


async def _settled(detector: AsyncDetectorClient, source_id: str, timeout_s: float = 3.0) -> Source:
    """The source once its subscribers have gone, so its counters include their last frames."""
    deadline = time.monotonic() + timeout_s
    while True:
        source = await detector.get_source(source_id, timeout_s=5)
        if source.counters.subscribers == 0 or time.monotonic() > deadline:
            return source
        await asyncio.sleep(0.05)


async def _placed(
    detector: AsyncDetectorClient, source_ids: list[str], timeout_s: float = 60.0
) -> None:
    """With detector replicas, until the new sources have found the replicas that keep them: a
    source added through one may be handed to another to even out their shares, and while it
    moves its clients are refused (UNAVAILABLE). Settled: every source answered by its replica
    and none moved over a few renewal intervals. A single detector places them at once."""
    deadline = time.monotonic() + timeout_s
    placed: dict[str, str] = {}
    steady = 0
    while steady < PLACED_POLLS and time.monotonic() < deadline:
        try:
            for source_id in source_ids:
                await detector.get_source(source_id, timeout_s=5)
            listed = {s.id: s.replica for s in await detector.list_sources(timeout_s=5)}
        except Unavailable:
            steady = 0
        else:
            now = {source_id: listed.get(source_id, "") for source_id in source_ids}
            if not any(listed.values()):
                return  # one detector (no source names a replica): nothing moves
            steady = steady + 1 if now == placed and all(now.values()) else 0
            placed = now
        await asyncio.sleep(PLACED_EVERY_S)


def ws_url(bridge: str, source_id: str, binary: bool) -> str:
    base = bridge.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")
    fmt = "binary" if binary else "json"
    return f"{base}/ws/video-stream/{source_id}?format={fmt}&extras=sequence,dropped"


async def run_scenario(
    scenario: Scenario,
    *,
    pids: dict[str, int] | None = None,
    keep_sources: bool = False,
    video: bytes | None = None,
) -> dict[str, Any]:
    """Run the scenario for its duration; ``pids`` names the service processes to watch."""
    scenario.validate()
    run_id = f"lt{os.getpid()}x{int(time.time() * 1000) % 10**8}"
    sub_source, ws_source = f"{run_id}-sub", f"{run_id}-ws"
    stats: dict[str, list[ClientStats]] = {
        "detect": [ClientStats() for _ in range(scenario.detect_streams)],
        "subscriber": [
            ClientStats() for _ in range(scenario.subscribers - scenario.slow_subscribers)
        ],
        "subscriber_slow": [ClientStats() for _ in range(scenario.slow_subscribers)],
        "viewer_fast": [ClientStats() for _ in range(scenario.viewers - scenario.slow_viewers)],
        "viewer_slow": [ClientStats() for _ in range(scenario.slow_viewers)],
        "analysis": [ClientStats() for _ in range(scenario.jobs)],
        "chat": [ClientStats() for _ in range(scenario.jobs)],
    }
    binary = scenario.viewer_format == "binary"
    detector = AsyncDetectorClient(scenario.detector)
    sources = []
    if scenario.subscribers:
        sources.append(sub_source)
    if scenario.viewers:
        sources.append(ws_source)
    for source_id in sources:
        await detector.add_source(
            source_id, "test_pattern", max_fps=scenario.source_fps, timeout_s=10
        )
    await _placed(detector, sources)
    bridge_before = (
        await asyncio.to_thread(bridge_frame_counters, scenario.bridge, ws_source)
        if scenario.viewers
        else {}
    )
    tracker = Tracker(pids or {}, children=True)
    if scenario.jobs and video is None:
        video = await asyncio.to_thread(_video)
    jpegs = media.jpegs() if scenario.detect_streams else []

    tasks: list[asyncio.Task[None]] = []
    for n, s in enumerate(stats["detect"]):
        coro = clients.detect_stream(scenario.detector, jpegs, scenario.detect_fps, s, f"lg{n}")
        tasks.append(asyncio.create_task(coro))
    for s in stats["subscriber"]:
        tasks.append(asyncio.create_task(clients.subscriber(scenario.detector, sub_source, s)))
    for s in stats["subscriber_slow"]:
        coro = clients.subscriber(
            scenario.detector, sub_source, s, slow_interval_s=scenario.slow_interval_s
        )
        tasks.append(asyncio.create_task(coro))
    url = ws_url(scenario.bridge, ws_source, binary)
    for s in stats["viewer_fast"]:
        tasks.append(asyncio.create_task(clients.viewer(url, s, binary=binary)))
    for s in stats["viewer_slow"]:
        coro = clients.viewer(
            url,
            s,
            binary=binary,
            slow_interval_s=scenario.slow_interval_s,
            slow_bytes_per_s=scenario.slow_bytes_per_s,
        )
        tasks.append(asyncio.create_task(coro))
    job_workers: list[asyncio.Task[None]] = []
    for a, c in zip(stats["analysis"], stats["chat"], strict=True):
        assert video is not None
        coro = clients.job_worker(scenario.analyzer, video, scenario.chat_question, a, c)
        job_workers.append(asyncio.create_task(coro))
    tasks.extend(job_workers)

    started = time.monotonic()
    try:
        while (left := scenario.duration_s - (time.monotonic() - started)) > 0:
            await asyncio.sleep(min(0.5, left))
            tracker.sample()
        window = time.monotonic() - started
        # The clients' figures first, then the services': whatever a client had received by
        # then, the services had already counted as sent or dropped.
        stats = {name: [s.frozen() for s in group] for name, group in stats.items()}
        # No job starts after the window: the services' job counts then cover the clients' and
        # at most the one job each worker had under way, however long what follows takes.
        for task in job_workers:
            task.cancel()
        at_end = {}
        for source_id in sources:
            at_end[source_id] = (await detector.get_source(source_id, timeout_s=5)).counters
        bridge_at_end = (
            await asyncio.to_thread(bridge_frame_counters, scenario.bridge, ws_source)
            if scenario.viewers
            else {}
        )
        resources = tracker.report(window)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=scenario.grace_s)
    try:
        detector_counters = {}
        for source_id in sources:
            after = counters(await _settled(detector, source_id))
            after["frames_published_at_window_end"] = at_end[source_id].frames_published
            after["frames_dropped_at_window_end"] = at_end[source_id].frames_dropped
            detector_counters[source_id] = after
        bridge_after = (
            await asyncio.to_thread(bridge_frame_counters, scenario.bridge, ws_source)
            if scenario.viewers
            else {}
        )
        if not keep_sources:
            for source_id in sources:
                await detector.remove_source(source_id, timeout_s=10)
    finally:
        await detector.close()

    classes = {name: class_report(name, group, window) for name, group in stats.items() if group}
    errors: dict[str, int] = {}
    for report in classes.values():
        for code, n in report["errors"].items():
            errors[code] = errors.get(code, 0) + n
    return {
        "scenario": {**scenario.__dict__, "slow_viewers": scenario.slow_viewers},
        "agreement": agreement(classes, detector_counters, bridge_at_end, bridge_before, sources),
        "window_s": round(window, 3),
        "sources": {"subscribers": sub_source, "viewers": ws_source},
        "classes": classes,
        "errors": dict(sorted(errors.items())),
        "resources": resources,
        "service_counters": {
            "detector": detector_counters,
            "bridge": {k: bridge_after[k] - bridge_before.get(k, 0.0) for k in bridge_after},
        },
    }


def agreement(
    classes: dict[str, dict[str, Any]],
    detector: dict[str, dict[str, float | int]],
    bridge_at_end: dict[str, float],
    bridge_before: dict[str, float],
    sources: list[str],
) -> dict[str, Any]:
    """The clients' figures set against the services' own counters, all as they stood when the
    window ended (the clients' read first, so no frame is counted as received but not yet sent).

    Subscribers: every frame the detector published while they were subscribed was either
    received or dropped for one of them, so received + the detector's drops should come to
    subscribers x published, less the few frames still in flight at the end. Viewers: the bridge
    counts what it sent; what the viewers received falls short by what was still in socket
    buffers (a slow viewer's kernel buffers hold several frames).
    """
    out: dict[str, Any] = {}
    subs = [classes[k] for k in ("subscriber", "subscriber_slow") if k in classes]
    if subs and sources and sources[0].endswith("-sub"):
        c = detector[sources[0]]
        received = sum(x["frames"] for x in subs)
        expected = sum(x["clients"] for x in subs) * int(c["frames_published_at_window_end"])
        out["subscribers"] = {
            "received": received,
            "dropped_by_detector": c["frames_dropped_at_window_end"],
            "dropped_reported_by_frames": sum(x["dropped_reported"] for x in subs),
            "published_x_subscribers": expected,
            "unaccounted": expected - received - int(c["frames_dropped_at_window_end"]),
        }
    views = [classes[k] for k in ("viewer_fast", "viewer_slow") if k in classes]
    if views and bridge_at_end:
        sent = bridge_at_end["frames_sent"] - bridge_before.get("frames_sent", 0.0)
        received = sum(x["frames"] for x in views)
        out["viewers"] = {
            "received": received,
            "sent_by_bridge": int(sent),
            "in_flight": int(sent) - received,
            "dropped_by_bridge": int(
                bridge_at_end["frames_dropped"] - bridge_before.get("frames_dropped", 0.0)
            ),
            "dropped_reported_by_frames": sum(x["dropped_reported"] for x in views),
            "sequence_gaps": sum(x["sequence_gaps"] for x in views),
        }
    return out


def _video() -> bytes:
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return media.small_video(pathlib.Path(tmp) / "clip.mp4")
