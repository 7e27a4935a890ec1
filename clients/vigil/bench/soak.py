"""Soak: the three services under a steady load for a long while; what they hold must come back.

``vigil bench soak [--duration S]`` (default 600 s) starts the detector, the analyzer and the
bridge, each as its own process (as ``vigil run`` starts them), puts the load generator on them
(Detect streams, Subscribe streams, WebSocket viewers, upload + analysis + chat workers:
``vigil.loadgen``), stops the load and lets the services settle. It measures, after a short
warm-up (start) and after the settling (end): resident memory of the three processes and their
children (the analyzer's media workers), open file descriptors, threads, child processes, and
what the services count themselves: detector subscribers, bridge WebSocket connections, analyzer
jobs queued or running. It passes when each is back to its start (memory within
``RSS_TOLERANCE``). The headline ``ratio`` is end RSS / start RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import pathlib
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vigil import launcher
from vigil.loadgen import media, spawn
from vigil.loadgen.resources import usage
from vigil.loadgen.runner import run_scenario
from vigil.loadgen.scenario import Scenario
from vigil.sdk import AsyncAnalyzerClient, AsyncDetectorClient

DEFAULT_DURATION_S = 600.0
# End RSS may exceed start RSS by this share (allocator caches, interned strings) ...
RSS_TOLERANCE = 0.25
# ... and these counts by this many (a keepalive timer, a thread pool worker that is parked).
FD_SLACK = 8
THREAD_SLACK = 4
SETTLE_S = 20.0
_GAUGE = re.compile(r'^vigil_bridge_connections\{kind="[^"]+"\} (\S+)$', re.M)
_JOBS = re.compile(r'^vigil_analyzer_jobs\{state="[^"]+"\} (\S+)$', re.M)
# What the services count themselves: each must be back to (at most) its start.
EXACT = ("detector_subscribers", "bridge_connections", "analyzer_jobs")


@dataclass
class _Running:
    services: spawn.Services
    analyzer_metrics: str
    video: bytes


@contextlib.contextmanager
def _services(viewers: int) -> Iterator[_Running]:
    metrics_port = launcher.free_port()
    env = {
        "VIGIL_ANALYZER_ENGINE": "none",
        "VIGIL_ANALYZER_DEFAULT_SAMPLING_POLICY": "seed",
        "VIGIL_ANALYZER_METRICS_PORT": str(metrics_port),
    }
    with tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        video = media.small_video(pathlib.Path(tmp) / "clip.mp4")
        with spawn.processes(viewers=viewers, env=env) as services:
            yield _Running(services, f"http://127.0.0.1:{metrics_port}/metrics", video)


def _scrape(url: str, pattern: re.Pattern[str]) -> float:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    return sum(float(v) for v in pattern.findall(text))


async def _detector_subscribers(address: str) -> int:
    async with AsyncDetectorClient(address) as detector:
        return sum(s.counters.subscribers for s in await detector.list_sources(timeout_s=5))


def _measure(running: _Running) -> dict[str, float]:
    uses = [usage(pid, children=True) for pid in running.services.pids.values()]
    assert all(uses), "no /proc, or a service is gone: the soak measures through /proc"
    return {
        "rss_mb": round(sum(u.rss_mb for u in uses if u), 1),
        "fds": sum(u.fds for u in uses if u),
        "threads": sum(u.threads for u in uses if u),
        "processes": sum(u.processes for u in uses if u),
        "detector_subscribers": asyncio.run(_detector_subscribers(running.services.detector)),
        "bridge_connections": _scrape(f"{running.services.bridge}/metrics", _GAUGE),
        "analyzer_jobs": _scrape(running.analyzer_metrics, _JOBS),
    }


def _scenario(running: _Running, duration_s: float) -> Scenario:
    return Scenario(
        detector=running.services.detector,
        analyzer=running.services.analyzer,
        bridge=running.services.bridge,
        duration_s=duration_s,
        detect_streams=2,
        detect_fps=10.0,
        subscribers=4,
        viewers=8,
        slow_share=0.25,
        jobs=1,
        source_fps=15.0,
        grace_s=5.0,
    )


async def _analyse_once(address: str, video: bytes) -> None:
    """One whole analysis, as in steady service: a load that ends mid-call leaves a media worker
    slot empty (the cancelled call's child is killed), to be refilled lazily, which would make a
    process and its memory come and go between measurements."""
    async with AsyncAnalyzerClient(address) as analyzer:
        uploaded = await analyzer.upload_video(
            io.BytesIO(video), name="settle.mp4", size=len(video), start_analysis=True
        )
        assert uploaded.job is not None
        async for _ in analyzer.events(uploaded.job.id):
            pass


def _settled(running: _Running, start: dict[str, float]) -> dict[str, float]:
    """Measure until the counts are back at their start values (or SETTLE_S passed)."""
    asyncio.run(asyncio.wait_for(_analyse_once(running.services.analyzer, running.video), 90))
    deadline = time.monotonic() + SETTLE_S
    while True:
        end = _measure(running)
        if all(end[k] <= start[k] for k in EXACT) or time.monotonic() > deadline:
            return end
        time.sleep(0.5)


def _verdict(start: dict[str, float], end: dict[str, float]) -> dict[str, bool]:
    return {
        "rss": end["rss_mb"] <= start["rss_mb"] * (1 + RSS_TOLERANCE),
        "fds": end["fds"] <= start["fds"] + FD_SLACK,
        "threads": end["threads"] <= start["threads"] + THREAD_SLACK,
        "processes": end["processes"] <= start["processes"],
        **{name: end[name] <= start[name] for name in EXACT},
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    duration = float(options.get("duration") or DEFAULT_DURATION_S)
    warmup = min(10.0, max(1.0, duration / 10))
    with _services(viewers=8) as running:
        # The first minutes allocate caches, pools and lazily imported modules for good: the
        # baseline is taken after a warm-up under the same load, once it has stopped.
        asyncio.run(run_scenario(_scenario(running, warmup)))
        start = _settled(running, dict.fromkeys(_measure(running), 0.0))
        started = time.monotonic()
        report = asyncio.run(run_scenario(_scenario(running, duration)))
        loaded_s = time.monotonic() - started
        peak = _measure(running)
        end = _settled(running, start)
    verdict = _verdict(start, end)
    result: dict[str, Any] = {
        "duration_s": round(loaded_s, 1),
        "passed": all(verdict.values()),
        "failed_checks": [name for name, ok in verdict.items() if not ok],
        "rss_growth_mb": round(end["rss_mb"] - start["rss_mb"], 1),
    }
    for name in start:
        result[f"start_{name}"] = start[name]
        result[f"end_{name}"] = end[name]
    result["after_load_rss_mb"] = peak["rss_mb"]
    result["errors"] = report.get("errors", {})
    classes = report.get("classes", {})
    result["viewer_frames"] = sum(
        classes.get(name, {}).get("frames", 0) for name in ("viewer_fast", "viewer_slow")
    )
    result["analyses_completed"] = classes.get("analysis", {}).get("completed", 0)
    result["ratio"] = round(end["rss_mb"] / start["rss_mb"], 3) if start["rss_mb"] else 0.0
    return result
