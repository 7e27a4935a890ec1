"""Time to sample 32 frames from a 10-minute and a 120-minute 720p video, with the analyzer's own
code (``analyzer_service.media``: probe, then exact seeks; ``sampling.uniform_targets``), timed
inside the service (``analyzer_service.benchmarks.sampling``, run as a child process).

The videos are H.264 720p at 5 fps with a keyframe every 10 s (a recorder's long GOP), made
cheaply: a 20-second segment is encoded once (libx264, ultrafast) and its packets are muxed again
and again with shifted timestamps, so a 2-hour file takes seconds, not minutes. Closed GOPs without
B-frames make the repeated packets a valid stream. They are cached under
``~/.cache/vigil/bench/``. The headline ``ratio`` is 120-minute time / 10-minute time: seeking
makes the cost depend on the keyframe interval, not on the length, so it should be near 1.
"""

from __future__ import annotations

import pathlib
import time
from fractions import Fraction
from typing import Any

from vigil.bench.child import run_module

WIDTH, HEIGHT, FPS, GOP_S, SEGMENT_S = 1280, 720, 5, 10, 20
FRAMES = 32


def cache_dir() -> pathlib.Path:
    path = pathlib.Path.home() / ".cache" / "vigil" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _segment(path: pathlib.Path) -> None:
    import av
    import cv2
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        gop = str(FPS * GOP_S)
        stream.options = {"preset": "ultrafast", "g": gop, "keyint_min": gop, "sc_threshold": "0"}
        ramp = np.linspace(40, 200, WIDTH, dtype=np.uint8)[None, :, None]
        base = np.broadcast_to(ramp, (HEIGHT, WIDTH, 3))
        for n in range(FPS * SEGMENT_S):
            image = base.copy()
            x = (n * 23) % (WIDTH - 160)
            image[300:420, x : x + 160] = 255
            cv2.putText(image, str(n), (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (0, 0, 255), 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def video(minutes: int) -> pathlib.Path:
    """The cached ``minutes``-long video, made on first use."""
    import av

    path = cache_dir() / f"sampling-{minutes}min-720p-{FPS}fps-gop{GOP_S}s.mp4"
    if path.exists():
        return path
    segment = cache_dir() / f"segment-{SEGMENT_S}s-720p-{FPS}fps-gop{GOP_S}s.mp4"
    if not segment.exists():
        _segment(segment)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(segment)) as src, av.open(str(partial), "w") as out:
        template = src.streams.video[0]
        stream = out.add_stream_from_template(template)
        packets = [p for p in src.demux(template) if p.size]
        assert template.time_base is not None
        step = round(Fraction(SEGMENT_S) / template.time_base)
        for cycle in range(minutes * 60 // SEGMENT_S):
            for packet in packets:
                packet.stream = stream
                assert packet.pts is not None
                assert packet.dts is not None
                base_pts, base_dts = packet.pts, packet.dts
                packet.pts, packet.dts = base_pts + cycle * step, base_dts + cycle * step
                out.mux(packet)
                packet.pts, packet.dts = base_pts, base_dts
    partial.rename(path)
    return path


def run(options: dict[str, Any]) -> dict[str, Any]:
    lengths = [int(m) for m in options.get("minutes", [10, 120])]
    repeat = max(1, min(int(options.get("repeat", 3)), 5))
    count = int(options.get("frames", FRAMES))
    made = time.perf_counter()
    paths = {m: video(m) for m in lengths}
    generate_s = time.perf_counter() - made
    out: dict[str, Any] = {"name": "sampling", "frames": count}
    videos = {str(m): str(path) for m, path in paths.items()}
    asked = {"videos": videos, "frames": count, "repeat": repeat, "slack_s": GOP_S}
    timed = run_module("analyzer_service.benchmarks.sampling", asked)
    times: dict[int, float] = {}
    for m, path in paths.items():
        times[m] = timed[str(m)]["exact_s"]
        out[f"{m}min_s"] = round(times[m], 3)
        out[f"{m}min_keyframe_slack_s"] = round(timed[str(m)]["slack_s"], 3)
        out[f"{m}min_file_mb"] = round(path.stat().st_size / 1e6, 1)
    short, long = min(lengths), max(lengths)
    out.update(
        {
            "video": f"{WIDTH}x{HEIGHT} H.264 {FPS} fps, keyframe every {GOP_S} s",
            "generate_s": round(generate_s, 1),
            "runs": repeat,
            "baseline": f"{short}-minute video",
            "ratio": round(times[long] / max(times[short], 1e-9), 3),
        }
    )
    return out
