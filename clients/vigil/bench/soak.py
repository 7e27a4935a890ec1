"""Soak: the three services under a steady load for a long while; what they hold must come back.

``vigil bench soak [--duration S]`` (default 600 s) starts the detector, the analyzer and the
bridge in this process (on an event loop of their own, in a thread), puts the load generator on
them (Detect streams, Subscribe streams, WebSocket viewers, upload + analysis + chat workers:
``vigil.loadgen``), stops the load and lets the services settle. It measures, after a short
warm-up (start) and after the settling (end): resident memory (this process and its children,
the analyzer's media workers), open file descriptors, threads, child processes, asyncio tasks on
the services' loop, and what the services count themselves: detector subscribers, bridge
WebSocket connections, analyzer event-bus subscribers. It passes when each is back to its start
(memory within ``RSS_TOLERANCE``). The headline ``ratio`` is end RSS / start RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
from vigil.loadgen.resources import usage
from vigil.loadgen.runner import run_scenario
from vigil.loadgen.scenario import Scenario
from vigil.loadgen.spawn import LoopThread

DEFAULT_DURATION_S = 600.0
# End RSS may exceed start RSS by this share (allocator caches, interned strings) ...
RSS_TOLERANCE = 0.25
# ... and these counts by this many (a keepalive timer, a thread pool worker that is parked).
FD_SLACK = 8
THREAD_SLACK = 4
TASK_SLACK = 2
SETTLE_S = 20.0
_GAUGE = re.compile(r'^vigil_bridge_connections\{kind="[^"]+"\} (\S+)$', re.M)


@dataclass
class _Running:
    loop: LoopThread
    detector: Any
    analyzer: Any
    bridge_url: str

    @property
    def detector_address(self) -> str:
        return f"127.0.0.1:{self.detector.port}"

    @property
    def analyzer_address(self) -> str:
        return f"127.0.0.1:{self.analyzer.port}"


@contextlib.contextmanager
def _services(root: pathlib.Path, viewers: int) -> Iterator[_Running]:
    import uvicorn

    from analyzer_service.server import serve as serve_analyzer
    from analyzer_service.settings import AnalyzerSettings
    from bridge.app import create_app
    from bridge.server import config, listen
    from bridge.settings import BridgeSettings
    from detector_service.server import serve as serve_detector
    from detector_service.settings import DetectorSettings

    loop = LoopThread()
    stops: list[Any] = []
    try:
        detector = loop.run(
            serve_detector(
                DetectorSettings(port=0, backend="none", data_dir=root / "detector", linger_s=0.5)
            )
        )
        stops.append(lambda: detector.stop(0))
        analyzer = loop.run(
            serve_analyzer(
                AnalyzerSettings(
                    port=0,
                    data_dir=root / "analyzer",
                    media_workers=1,
                    engine="none",
                    default_sampling_policy="seed",
                    detector_address=f"127.0.0.1:{detector.port}",
                )
            )
        )
        stops.append(lambda: analyzer.stop(0))
        settings = BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{detector.port}",
            analyzer_address=f"127.0.0.1:{analyzer.port}",
            max_connections_per_client=max(32, viewers + 16),
            log_level="WARNING",
        )
        sock = listen(settings)
        server = uvicorn.Server(
            config(create_app(settings), settings, loop="none", log_level="warning")
        )

        async def start_bridge() -> asyncio.Task[None]:
            return asyncio.create_task(server.serve(sockets=[sock]))

        task = loop.run(start_bridge())
        deadline = time.monotonic() + 15
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("the bridge did not start")
            time.sleep(0.01)

        async def stop_bridge() -> None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)

        stops.append(stop_bridge)
        yield _Running(loop, detector, analyzer, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        for stop in reversed(stops):
            with contextlib.suppress(Exception):
                loop.run(stop(), timeout=30)
        loop.close()


async def _tasks() -> int:
    return len(asyncio.all_tasks())


def _bridge_connections(url: str) -> float:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    return sum(float(v) for v in _GAUGE.findall(text))


async def _detector_subscribers(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        reply = await stub.ListSources(dpb.ListSourcesRequest(), timeout=5)
        return sum(s.counters.subscribers for s in reply.sources)


def _measure(running: _Running) -> dict[str, float]:
    use = usage(os.getpid(), children=True)
    assert use is not None, "no /proc: the soak measures through it"
    bus = running.analyzer.jobs.bus
    return {
        "rss_mb": round(use.rss_mb, 1),
        "fds": use.fds,
        "threads": use.threads,
        "processes": use.processes,
        "asyncio_tasks": running.loop.run(_tasks()),
        "detector_subscribers": asyncio.run(_detector_subscribers(running.detector_address)),
        "bridge_connections": _bridge_connections(running.bridge_url),
        "analyzer_event_subscribers": sum(len(s) for s in bus._subscribers.values()),
    }


def _scenario(running: _Running, duration_s: float) -> Scenario:
    return Scenario(
        detector=running.detector_address,
        analyzer=running.analyzer_address,
        bridge=running.bridge_url,
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


async def _fill_pool(workers: Any) -> None:
    """The media worker pool full and its children done importing, as in steady service: a load
    that ends mid-call leaves a slot empty (the cancelled call's child is killed), to be refilled
    lazily, which would make a process and its memory come and go between measurements."""
    workers.warm_up()
    for _ in range(workers._idle.maxsize):
        await workers.call(60.0, os.getpid)


def _settled(running: _Running, start: dict[str, float]) -> dict[str, float]:
    """Measure until the counts are back at their start values (or SETTLE_S passed)."""
    running.loop.run(_fill_pool(running.analyzer.workers), timeout=90)
    deadline = time.monotonic() + SETTLE_S
    exact = ("detector_subscribers", "bridge_connections", "analyzer_event_subscribers")
    while True:
        end = _measure(running)
        back = all(end[k] <= start[k] for k in exact) and (
            end["asyncio_tasks"] <= start["asyncio_tasks"] + TASK_SLACK
        )
        if back or time.monotonic() > deadline:
            return end
        time.sleep(0.5)


def _verdict(start: dict[str, float], end: dict[str, float]) -> dict[str, bool]:
    return {
        "rss": end["rss_mb"] <= start["rss_mb"] * (1 + RSS_TOLERANCE),
        "fds": end["fds"] <= start["fds"] + FD_SLACK,
        "threads": end["threads"] <= start["threads"] + THREAD_SLACK,
        "processes": end["processes"] <= start["processes"],
        "asyncio_tasks": end["asyncio_tasks"] <= start["asyncio_tasks"] + TASK_SLACK,
        "detector_subscribers": end["detector_subscribers"] <= start["detector_subscribers"],
        "bridge_connections": end["bridge_connections"] <= start["bridge_connections"],
        "analyzer_event_subscribers": (
            end["analyzer_event_subscribers"] <= start["analyzer_event_subscribers"]
        ),
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    duration = float(options.get("duration") or DEFAULT_DURATION_S)
    warmup = min(10.0, max(1.0, duration / 10))
    with (
        tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp,
        _services(pathlib.Path(tmp), viewers=8) as running,
    ):
        # The first minutes allocate caches, pools and lazily imported modules for good: the
        # baseline is taken after a warm-up under the same load, once it has stopped.
        asyncio.run(run_scenario(_scenario(running, warmup)))
        start = _settled(running, dict.fromkeys(_measure(running), 0.0) | {"asyncio_tasks": 1e9})
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
