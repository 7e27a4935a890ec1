"""Video files and streams for ``vigil detect``: frames read as JPEGs with OpenCV, and the
annotated frames written back as a video. Imported only by that command, as OpenCV and numpy
come with the ``video`` extra, not with the base install."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from vigil import cli_common as common
from vigil.sdk import DetectFrame

JPEG_QUALITY = 90
DEFAULT_FPS = 15.0


class VideoReader:
    """Frames of a file or stream as JPEGs; remembers each frame's position in the video."""

    def __init__(self, source: str, max_frames: int | None, source_id: str) -> None:
        if "://" not in source and not pathlib.Path(source).is_file():
            raise common.UsageError(f"no such video file: {source}")
        self.capture = cv2.VideoCapture(source)
        if not self.capture.isOpened():
            raise common.UsageError(f"OpenCV cannot open {source}")
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        # Streams often report nonsense rates; the writer then needs a sane one.
        self.fps = fps if 0 < fps <= 240 else DEFAULT_FPS
        self.max_frames = max_frames
        self.source_id = source_id
        # Frames sent and not yet answered: sequence -> (seconds into the video, JPEG).
        self.pending: dict[int, tuple[float, bytes]] = {}
        self.lock = threading.Lock()
        self.closed = False

    def frames(self) -> Iterator[DetectFrame]:
        sequence = 0
        while self.max_frames is None or sequence < self.max_frames:
            with self.lock:
                if self.closed:
                    return
                ok, image = self.capture.read()
                position = float(self.capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000
            if not ok:
                return
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                continue
            self.pending[sequence] = (position or sequence / self.fps, bytes(buf))
            yield DetectFrame(bytes(buf), sequence=sequence, source_id=self.source_id)
            sequence += 1

    def close(self) -> None:
        # gRPC runs ``frames`` on a thread of its own, which may be inside ``read`` when the call
        # fails; releasing the capture under it aborts the process inside FFmpeg.
        with self.lock:
            self.closed = True
            self.capture.release()


class AnnotatedWriter:
    def __init__(self, path: str, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, jpeg: bytes) -> None:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return
        if self.writer is None:
            height, width = image.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, (width, height))
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
