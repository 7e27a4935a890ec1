"""Start and stop a live RTSP camera (``rtsp_camera.py`` under the system python3) as a process."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import threading
from types import TracebackType

SCRIPT = pathlib.Path(__file__).with_name("rtsp_camera.py")
# GStreamer's Python bindings come from Debian (python3-gi, gir1.2-gst-rtsp-server-1.0), so the
# camera runs under the system interpreter, not this environment's.
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspCamera:
    """A GStreamer RTSP server on 127.0.0.1 with one shared live H.264 camera per mount, showing
    GStreamer's test ``pattern`` (a moving ball by default; "blue" is a still blue picture), or a
    scripted scene: ``frames``, a printf pattern of JPEG files numbered from 0 (for example
    ``/tmp/scene/%05d.jpg``, all of ``width``×``height``), played at ``fps`` and looped."""

    def __init__(
        self,
        mounts: tuple[str, ...] = ("cam",),
        *,
        width: int = 1280,
        height: int = 720,
        fps: int = 15,
        keyframe_s: float = 2.0,
        pattern: str = "ball",
        frames: str = "",
    ) -> None:
        self.mounts = mounts
        self.args = [
            f"--mounts={','.join(mounts)}",
            f"--width={width}",
            f"--height={height}",
            f"--fps={fps}",
            f"--keyframe-s={keyframe_s}",
            f"--pattern={pattern}",
            f"--frames={frames}",
        ]
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    def url(self, mount: str | None = None) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{mount or self.mounts[0]}"

    def start(self, timeout_s: float = 30.0) -> None:
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), *self.args],
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        line: list[str] = []
        # The first line says the port; a reader thread keeps a hung start from hanging us.
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout_s)
        if not line or not line[0].startswith("PORT "):
            self.stop()
            raise RuntimeError(f"the RTSP camera did not start: {line!r}")
        self.port = int(line[0].split()[1])

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
