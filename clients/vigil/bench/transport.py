"""Frames per second delivered to WebSocket viewers: detector -> bridge -> viewers, against a bare
``websockets`` server pushing the same JPEGs in the same format on the same machine.

The detector (backend none, test pattern at ``fps``) and the bridge run as their own processes,
as deployed; the bare server is a process too, with the same event loop (uvloop), the same
per-viewer newest-wins queue of 2 and each message built once per frame and shared, i.e. the
least a Python server must do to push these frames. Viewers run in this process, alike for both.
Per configuration (format x viewer count): a warm-up, then frames counted over ``seconds``.
The headline ``ratio`` is bridge / bare at ``headline_viewers``, the lower of the two formats.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import pathlib
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

_LENGTH = struct.Struct(">I")


# --- the bare server (run as ``python -m vigil.bench.transport PORT FPS JPEG_FILE``) -----------


def read_jpegs(path: pathlib.Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (n,) = _LENGTH.unpack_from(data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out


async def bare_server(port: int, fps: float, jpegs: list[bytes]) -> None:
    import base64

    import orjson
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    # Per viewer: (binary?, newest-wins queue of 2, wake-up event). Text frames are queued as
    # UTF-8 bytes and sent with text=True, so they are encoded once, not once per viewer.
    viewers: dict[ServerConnection, tuple[bool, collections.deque[bytes], asyncio.Event]]
    viewers = {}

    rate = [fps]

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        binary = "format=binary" in path
        # ``&fps=`` sets the push rate: the benchmark matches the rate the detector sustained.
        if "fps=" in path:
            rate[0] = float(path.split("fps=", 1)[1].split("&", 1)[0])
        queue: collections.deque[bytes] = collections.deque(maxlen=2)
        ready = asyncio.Event()
        viewers[ws] = (binary, queue, ready)
        try:
            while True:
                await ready.wait()
                ready.clear()
                while queue:
                    await ws.send(queue.popleft(), text=not binary)
        except ConnectionClosed:
            pass  # a viewer leaving (each run's end drops them abruptly) is not an error
        finally:
            del viewers[ws]

    async def produce() -> None:
        sequence, next_at = 0, time.monotonic()
        while True:
            next_at = max(next_at + 1.0 / rate[0], time.monotonic() - 0.1)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if not viewers:
                continue
            sequence += 1
            jpeg, now = jpegs[sequence % len(jpegs)], time.time()
            text: bytes | None = None
            packed: bytes | None = None
            for binary, queue, ready in viewers.values():
                if binary:
                    if packed is None:
                        header = orjson.dumps(
                            {"type": "frame", "timestamp": now, "sequence": sequence}
                        )
                        packed = b"".join((_LENGTH.pack(len(header)), header, jpeg))
                    queue.append(packed)
                else:
                    if text is None:
                        data = base64.b64encode(jpeg).decode("ascii")
                        message = {"type": "frame", "data": data, "timestamp": now}
                        text = orjson.dumps({**message, "sequence": sequence})
                    queue.append(text)
                ready.set()

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**16):
        await produce()


# --- the measurement ---------------------------------------------------------------------------


async def _capture(detector: str, source_id: str, seconds: float) -> tuple[list[bytes], float]:
    """The source's JPEGs for ``seconds``, and the frame rate it sustained meanwhile."""
    from vigil.sdk import AsyncDetectorClient, Frame

    out: list[bytes] = []
    stamps: list[float] = []
    async with AsyncDetectorClient(detector) as client, client.subscribe(source_id) as stream:
        async for item in stream:
            if isinstance(item, Frame):
                stamps.append(item.timestamp)
                out.append(item.jpeg)
                if stamps[-1] - stamps[0] >= seconds:
                    break
    return out, (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def _keep_capturing(detector: str, source_id: str) -> None:
    """A subscriber that wants no pictures: keeps the detector capturing and encoding during the
    bare runs, so both sides share the machine with the same capture load."""
    from vigil.sdk import AsyncDetectorClient

    async with AsyncDetectorClient(detector) as client:
        async for _ in client.subscribe(source_id, omit_jpeg=True):
            pass


async def _measure(
    url: str,
    viewers: int,
    binary: bool,
    warmup_s: float,
    seconds: float,
    busy: tuple[str, str] | None = None,
) -> dict[str, Any]:
    from vigil.loadgen import clients
    from vigil.loadgen.stats import ClientStats, summary

    stats = [ClientStats() for _ in range(viewers)]
    tasks = [asyncio.create_task(clients.viewer(url, s, binary=binary)) for s in stats]
    if busy is not None:
        tasks.append(asyncio.create_task(_keep_capturing(*busy)))
    try:
        await asyncio.sleep(warmup_s)
        before = sum(s.frames for s in stats)
        seq0 = [s.last_sequence for s in stats]
        for s in stats:
            s.latencies_ms.clear()
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        frames = sum(s.frames for s in stats) - before
        latencies = [x for s in stats for x in s.latencies_ms]
        # Frames the source made per second meanwhile, from the sequence numbers seen.
        offered = max(s.last_sequence - s0 for s, s0 in zip(stats, seq0, strict=True)) / elapsed
        size = sum(s.bytes for s in stats) / max(1, sum(s.frames for s in stats))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = sum(sum(s.errors.values()) for s in stats)
    return {
        "fps": round(frames / elapsed, 1),
        "fps_per_viewer": round(frames / elapsed / viewers, 1),
        "source_fps": round(offered, 1),
        "message_kb": round(size / 1024, 1),
        "latency_ms": summary(latencies),
        "errors": errors,
    }


@contextlib.contextmanager
def _bare(port: int, fps: float, jpeg_file: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    args = [sys.executable, "-m", "vigil.bench.transport", str(port), str(fps), str(jpeg_file)]
    proc = subprocess.Popen(args)
    try:
        import socket

        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bare WebSocket server did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def run(options: dict[str, Any]) -> dict[str, Any]:
    import uvloop

    from vigil import launcher
    from vigil.loadgen import spawn
    from vigil.loadgen.resources import Tracker
    from vigil.sdk import DetectorClient

    viewer_counts: list[int] = list(options.get("viewers", [1, 10, 50]))
    formats: list[str] = list(options.get("formats", ["json", "binary"]))
    fps = float(options.get("fps", 120.0))
    seconds = float(options.get("seconds", 4.0))
    warmup_s = float(options.get("warmup_s", 1.5))
    headline = int(options.get("headline_viewers", max(viewer_counts)))
    source_id = "bench-transport"

    with (
        spawn.processes(("detector", "bridge"), viewers=max(viewer_counts)) as services,
        tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp,
    ):
        with DetectorClient(services.detector) as detector:
            detector.add_source(source_id, "test_pattern", max_fps=fps, timeout_s=10)
        calibrate_s = float(options.get("calibrate_s", 3.0))
        jpegs, sustained = uvloop.run(_capture(services.detector, source_id, calibrate_s))
        # The bare server pushes at the rate the source really delivers, not the one asked for.
        rate = min(fps, sustained)
        jpeg_file = pathlib.Path(tmp) / "frames.bin"
        jpeg_file.write_bytes(b"".join(_LENGTH.pack(len(j)) + j for j in jpegs))
        port = launcher.free_port()
        ws_base = services.bridge.replace("http://", "ws://")
        configs: dict[str, Any] = {}
        with _bare(port, rate, jpeg_file) as bare:
            pids = {**services.pids, "bare": bare.pid, "viewers": _self_pid()}
            capture = (services.detector, source_id)
            for fmt in formats:
                for count in viewer_counts:
                    row: dict[str, Any] = {}
                    binary = fmt == "binary"
                    url = f"{ws_base}/ws/video-stream/{source_id}?format={fmt}&extras=sequence"
                    tracker = Tracker(pids, children=False)
                    row["bridge"] = uvloop.run(_measure(url, count, binary, warmup_s, seconds))
                    row["bridge"]["cpu_percent"] = tracker.cpu_percent(warmup_s + seconds)
                    # The same frame rate as the detector managed in the bridge run.
                    offered = row["bridge"]["source_fps"] or rate
                    url = f"ws://127.0.0.1:{port}/?format={fmt}&fps={offered:.2f}"
                    tracker = Tracker(pids, children=False)
                    row["bare"] = uvloop.run(
                        _measure(url, count, binary, warmup_s, seconds, capture)
                    )
                    row["bare"]["cpu_percent"] = tracker.cpu_percent(warmup_s + seconds)
                    row["ratio"] = round(row["bridge"]["fps"] / max(row["bare"]["fps"], 1e-9), 3)
                    configs[f"{fmt}_{count}"] = row
    headline_ratios = {f: configs[f"{f}_{headline}"]["ratio"] for f in formats}
    worst = min(headline_ratios, key=lambda f: headline_ratios[f])
    return {
        "name": "transport",
        "source_max_fps": fps,
        "source_sustained_fps": round(sustained, 1),
        "bare_fps_paced_at": round(rate, 1),
        "jpeg_kb": round(sum(map(len, jpegs)) / len(jpegs) / 1024, 1),
        "seconds_per_config": seconds,
        "configs": configs,
        "headline": f"{worst}, {headline} viewers (the lower of the formats)",
        "headline_ratios": headline_ratios,
        "baseline": "bare websockets server (uvloop), same JPEGs, same format, same rate",
        "bridge_fps": configs[f"{worst}_{headline}"]["bridge"]["fps"],
        "bare_fps": configs[f"{worst}_{headline}"]["bare"]["fps"],
        "ratio": headline_ratios[worst],
    }


def _self_pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    import uvloop

    uvloop.run(
        bare_server(int(sys.argv[1]), float(sys.argv[2]), read_jpegs(pathlib.Path(sys.argv[3])))
    )
