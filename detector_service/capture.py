"""Frame readers: where a source's frames come from. Each runs on the source's capture thread."""

from __future__ import annotations

import abc
import os
import time
from typing import cast

import cv2

from detector_service.backends.base import Image
from detector_service.testpattern import TestPattern
from vigil.detector.v1 import detector_service_pb2 as pb

# Seconds a network or camera read may block before the capture gives up and reconnects.
READ_TIMEOUT_S = 5.0


class CaptureError(RuntimeError):
    """The input cannot be opened or read. ``permanent`` errors need a configuration change."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class EndOfStream(Exception):
    """A file source reached its end and does not loop."""


class FrameReader(abc.ABC):
    @abc.abstractmethod
    def read(self) -> Image:
        """Block until the next frame; raise ``CaptureError`` or ``EndOfStream``."""

    def close(self) -> None:  # noqa: B027 - readers without resources need nothing here
        """Release the device, stream or file."""


class TestPatternReader(FrameReader):
    __test__ = False

    def __init__(self, spec: pb.SourceSpec, fps: float) -> None:
        self.pattern = TestPattern(spec.width or 1280, spec.height or 720)
        self.interval = 1.0 / fps
        self.n = 0
        self.next_at = time.monotonic()

    def read(self) -> Image:
        # Paced like a camera: rendering faster than we publish would only burn CPU.
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at + self.interval, time.monotonic())
        self.n += 1
        return self.pattern.render(self.n)


class OpenCvReader(FrameReader):
    """Webcams (device index), RTSP/HTTP streams and files, through OpenCV's FFmpeg backend."""

    def __init__(self, spec: pb.SourceSpec) -> None:
        self.spec = spec
        self.is_file = spec.kind == pb.SOURCE_KIND_FILE
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(READ_TIMEOUT_S * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(READ_TIMEOUT_S * 1000),
        ]
        if spec.kind == pb.SOURCE_KIND_WEBCAM:
            try:
                index = int(spec.uri or "0")
            except ValueError:
                raise CaptureError(
                    f"webcam uri must be a device index, not {spec.uri!r}", permanent=True
                ) from None
            self.cap = cv2.VideoCapture(index, cv2.CAP_ANY, params)
            if spec.width and spec.height:
                self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
                self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
            if not self.cap.isOpened():
                raise CaptureError(
                    f"camera {index} cannot be opened: it may be in use by another program, "
                    "missing, or not permitted for this user"
                )
        else:
            if self.is_file and not os.access(spec.uri, os.R_OK):
                # Retrying cannot make a file appear or become readable: FAILED, not RECONNECTING.
                reason = "does not exist" if not os.path.exists(spec.uri) else "is not readable"
                raise CaptureError(f"file {spec.uri!r} {reason}", permanent=True)
            self.cap = cv2.VideoCapture(spec.uri, cv2.CAP_FFMPEG, params)
            if not self.cap.isOpened():
                raise CaptureError(f"cannot open {self._safe_uri()}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        # Files are read at their own frame rate, as if they were a camera.
        self.interval = 1.0 / fps if self.is_file and 0 < fps < 1000 else 0.0
        self.next_at = time.monotonic()

    def _safe_uri(self) -> str:
        # Stream URLs may carry credentials (rtsp://user:pass@host); never show them.
        uri = self.spec.uri
        if "@" in uri and "://" in uri:
            scheme, rest = uri.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return uri

    def read(self) -> Image:
        if self.interval:
            delay = self.next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_at = max(self.next_at + self.interval, time.monotonic())
        ok, frame = self.cap.read()
        if ok and frame is not None:
            return cast(Image, frame)
        if self.is_file:
            if not self.spec.loop:
                raise EndOfStream
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
            if ok and frame is not None:
                return cast(Image, frame)
        raise CaptureError(f"no frame from {self._safe_uri()}")

    def close(self) -> None:
        self.cap.release()


def open_reader(spec: pb.SourceSpec, fps: float) -> FrameReader:
    if spec.kind == pb.SOURCE_KIND_TEST_PATTERN:
        return TestPatternReader(spec, fps)
    return OpenCvReader(spec)
