"""A live H.264 RTSP camera for tests: GStreamer's RTSP server on 127.0.0.1.

Run by the system ``/usr/bin/python3`` (GStreamer's Python bindings are Debian packages, not
wheels): ``rtsp_camera.py --mounts cam0,cam1 --width 320 --height 240 --fps 15 --keyframe-s 1``.
Each mount is one shared media factory, so every client of a mount watches the same live encoder,
as with a real camera; a new client decodes from the next keyframe. It prints ``PORT <n>`` once
listening and serves until killed.
"""

from __future__ import annotations

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mounts", default="cam")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--keyframe-s", type=float, default=2.0)
    # A videotestsrc pattern: "ball" moves; "blue" or "red" are still, solid pictures.
    parser.add_argument("--pattern", default="ball")
    # A scripted scene instead: JPEG files named by a printf pattern ("/tmp/s/%05d.jpg"), numbered
    # from 0, played at --fps in real time and from the start again after the last one.
    parser.add_argument("--frames", default="")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    gop = max(1, round(args.fps * args.keyframe_s))
    if args.frames:
        # clocksync paces the files at --fps as a camera would deliver them.
        source = (
            f"multifilesrc location={args.frames} index=0 loop=true "
            f"caps=image/jpeg,framerate={args.fps}/1 ! jpegdec ! videoconvert "
            "! clocksync sync-to-first=true"
        )
    else:
        source = f"videotestsrc is-live=true pattern={args.pattern}"
    launch = (
        f"( {source} ! video/x-raw,width={args.width},"
        f"height={args.height},framerate={args.fps}/1 ! x264enc tune=zerolatency "
        f"speed-preset=ultrafast key-int-max={gop} ! rtph264pay name=pay0 pt=96 )"
    )
    mounts = server.get_mount_points()
    for name in args.mounts.split(","):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        mounts.add_factory(f"/{name}", factory)
    server.attach(None)
    print(f"PORT {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
