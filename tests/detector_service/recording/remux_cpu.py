"""CPU per recorded stream while remuxing a live 720p15 RTSP camera (a figure, not a test).

    python -m tests.detector_service.recording.remux_cpu [--streams 4] [--seconds 15]

A GStreamer RTSP camera (720p15 H.264, a keyframe every 2 s) serves every client the same stream;
this process opens ``--streams`` connections to it and, in turn, only reads them (demux), records
them (demux + remux into segments) and decodes them (what any re-encoding would need at least).
Printed: this process's CPU time per stream-second, as percent of one core. The camera's picture
is noise at a fixed bitrate (``--kbps``), as busy as a real camera's main stream; the bench
camera's ball on black would make every figure look cheaper than it is.
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from detector_service.recording import SegmentIndex, SegmentWriter
from tests.detector_service.recording.media import open_rtsp
from vigil.bench.rtsp import SYSTEM_PYTHON

if TYPE_CHECKING:
    from detector_service.recording.writer import VideoPacket


CAMERA = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=snow ! video/x-raw,width=1280,height=720,framerate=15/1"
    f" ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate={sys.argv[1]}"
    " ! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"PORT {server.get_bound_port()}", flush=True)
GLib.MainLoop().run()
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(url: str, streams: int, seconds: float, work: Callable[[int, str, float], None]) -> float:
    threads = [
        threading.Thread(target=work, args=(n, url, time.monotonic() + seconds))
        for n in range(streams)
    ]
    before = _cpu()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (_cpu() - before) / (streams * seconds) * 100


def _until(deadline: float, packets: Iterator[VideoPacket]) -> Iterator[VideoPacket]:
    return itertools.takewhile(lambda _: time.monotonic() < deadline, packets)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--kbps", type=int, default=3000)
    args = parser.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="remux-cpu-"))
    index = SegmentIndex(folder / "index.db")
    recorded: list[int] = []

    def demux(n: int, url: str, until: float) -> None:
        with open_rtsp(url) as container:
            stream = container.streams.video[0]
            for _ in _until(until, container.demux(stream)):
                pass

    def remux(n: int, url: str, until: float) -> None:
        writer = SegmentWriter(index, folder / "segments", f"cam{n}")
        with open_rtsp(url) as container:
            stream = container.streams.video[0]
            packets = _until(until, container.demux(stream))
            recorded.append(writer.record(stream, packets).packets)

    def decode(n: int, url: str, until: float) -> None:
        with open_rtsp(url) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if time.monotonic() >= until:
                    break
                packet.decode()

    camera = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", CAMERA, str(args.kbps)], stdout=subprocess.PIPE, text=True
    )
    assert camera.stdout is not None
    url = f"rtsp://127.0.0.1:{int(camera.stdout.readline().split()[1])}/cam"
    try:
        print(
            f"{args.streams} connections to one 1280x720 15 fps H.264 RTSP camera "
            f"({args.kbps} kbit/s), {args.seconds:.0f} s per mode"
        )
        for name, work in (("demux only", demux), ("record (remux)", remux), ("decode", decode)):
            percent = _run(url, args.streams, args.seconds, work)
            print(f"  {name:15s} {percent:5.1f} % of one core per stream")
    finally:
        camera.kill()
        camera.wait()
    total = sum(seg.bytes for n in range(args.streams) for seg in index.all_segments(f"cam{n}"))
    segments = sum(len(index.all_segments(f"cam{n}")) for n in range(args.streams))
    rate = total / args.streams / args.seconds * 8 / 1000
    fps = sum(recorded) / args.streams / args.seconds
    print(f"  recorded {segments} segments, {rate:.0f} kbit/s and {fps:.1f} frames/s per stream")


if __name__ == "__main__":
    main()
