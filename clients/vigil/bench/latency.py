"""Capture-to-viewer latency with 10 viewers, one of them throttled to 50 KB/s, against the same
run without the throttled one.

A throttled viewer reads through a small kernel receive buffer and paces its reads to the byte
rate, so the bridge's socket to it fills up; the bridge must then drop frames for that viewer
alone. The headline ``ratio`` is the p99 latency of the other viewers with the throttled one
present divided by their p99 without it: 1.0 means a slow viewer costs the others nothing.
Latency is the frame's capture time (stamped by the detector) to its receipt by the viewer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def _run(
    url: str, viewers: int, throttled_bps: float | None, warmup_s: float, seconds: float
) -> dict[str, Any]:
    from vigil.loadgen import clients
    from vigil.loadgen.stats import ClientStats, class_report

    binary = "format=binary" in url
    normal = [ClientStats() for _ in range(viewers)]
    slow = [ClientStats()] if throttled_bps else []
    tasks = [asyncio.create_task(clients.viewer(url, s, binary=binary)) for s in normal]
    tasks += [
        asyncio.create_task(clients.viewer(url, s, binary=binary, slow_bytes_per_s=throttled_bps))
        for s in slow
    ]
    try:
        await asyncio.sleep(warmup_s)
        for s in normal + slow:
            s.latencies_ms.clear()
            s.frames = 0
        start = time.monotonic()
        await asyncio.sleep(seconds)
        window = time.monotonic() - start
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out = {"others": class_report("others", normal, window)}
    out["others"]["latencies"] = [x for s in normal for x in s.latencies_ms]
    if slow:
        out["throttled"] = class_report("throttled", slow, window)
        out["throttled"]["latencies"] = slow[0].latencies_ms
    return out


def _pooled(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Class reports of several runs as one: latencies pooled, counts summed, rates averaged."""
    from vigil.loadgen.stats import summary

    n = len(reports)
    return {
        "latency_ms": summary([x for r in reports for x in r["latencies"]]),
        "frames_per_s": sum(r["frames_per_s"] for r in reports) / n,
        "frames_per_s_per_client": round(sum(r["frames_per_s_per_client"] for r in reports) / n, 2),
        "megabytes_per_s": sum(r["megabytes_per_s"] for r in reports) / n,
        "dropped_reported": sum(r["dropped_reported"] for r in reports),
        "sequence_gaps": sum(r["sequence_gaps"] for r in reports),
    }


def run(options: dict[str, Any]) -> dict[str, Any]:
    import uvloop

    from vigil.loadgen import spawn
    from vigil.sdk import DetectorClient

    viewers = int(options.get("viewers", 10))
    fps = float(options.get("fps", 30.0))
    seconds = float(options.get("seconds", 8.0))
    warmup_s = float(options.get("warmup_s", 2.0))
    rate = float(options.get("throttle_bytes_per_s", 50_000))
    fmt = str(options.get("format", "json"))
    source_id = "bench-latency"
    with spawn.processes(("detector", "bridge"), viewers=viewers) as services:
        with DetectorClient(services.detector) as detector:
            detector.add_source(source_id, "test_pattern", max_fps=fps, timeout_s=10)
        base = services.bridge.replace("http://", "ws://")
        url = f"{base}/ws/video-stream/{source_id}?format={fmt}&extras=sequence,dropped"
        # Alternating baseline and throttled runs, so that drift in the machine's load (other
        # work on its two cores) falls on both alike; their latencies are pooled.
        rounds = int(options.get("rounds", 2))
        without, with_slow = [], []
        for _ in range(rounds):
            without.append(uvloop.run(_run(url, viewers - 1, None, warmup_s, seconds)))
            with_slow.append(uvloop.run(_run(url, viewers - 1, rate, warmup_s, seconds)))
    a = _pooled([r["others"] for r in without])
    b = _pooled([r["others"] for r in with_slow])
    slow = _pooled([r["throttled"] for r in with_slow])
    return {
        "name": "latency",
        "source_fps": fps,
        "format": fmt,
        "viewers": viewers,
        "throttle_bytes_per_s": rate,
        "without_throttled_p50_ms": a["latency_ms"]["p50"],
        "without_throttled_p99_ms": a["latency_ms"]["p99"],
        "without_throttled_fps_per_viewer": a["frames_per_s_per_client"],
        "with_throttled_p50_ms": b["latency_ms"]["p50"],
        "with_throttled_p99_ms": b["latency_ms"]["p99"],
        "with_throttled_fps_per_viewer": b["frames_per_s_per_client"],
        "others_dropped": b["dropped_reported"],
        "rounds": len(without),
        "seconds_per_run": seconds,
        "throttled_fps": round(slow["frames_per_s"], 2),
        "throttled_kb_per_s": round(slow["megabytes_per_s"] * 1000, 1),
        "throttled_p50_ms": slow["latency_ms"]["p50"],
        "throttled_p99_ms": slow["latency_ms"]["p99"],
        "throttled_dropped": slow["dropped_reported"],
        "throttled_sequence_gaps": slow["sequence_gaps"],
        "baseline": f"the same {viewers - 1} viewers without the throttled one",
        "ratio": round(b["latency_ms"]["p99"] / max(a["latency_ms"]["p99"], 1e-9), 3),
    }
