"""Frame readers: where a source's frames come from. Each runs on the source's capture thread."""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, cast

from detector_service.backends.base import Image
from detector_service.native_logs import AV_LOG_QUIET
from detector_service.source_uri import SourceUri
from detector_service.testpattern import TestPattern
from vigil.detector.v1 import detector_service_pb2 as pb

# Seconds a network or camera read may block before the capture gives up and reconnects.
READ_TIMEOUT_S = 5.0
# Seconds an open may take: connecting, the RTSP handshake and probing up to the first keyframe
# (a camera sending one every 2 s needs up to 2 s of it).
OPEN_TIMEOUT_S = 10.0
DECODER_THREADS = 2

if TYPE_CHECKING:
    # Imported on the first stream or file opened: PyAV's FFmpeg libraries add ~16 MB of RSS
    # that a detector watching only webcams or the test pattern never needs.
    import av

    # Sees every packet before it is decoded: the recorder's tee (detector_service.recorder).
    PacketTap = Callable[[av.Packet[av.VideoStream]], None]


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


class WebcamReader(FrameReader):
    """Webcams (a device index), through OpenCV: PyAV would need a per-OS device format."""

    def __init__(self, spec: pb.SourceSpec) -> None:
        import cv2

        try:
            index = int(spec.uri or "0")
        except ValueError:
            raise CaptureError(
                f"webcam uri must be a device index, not {spec.uri!r}", permanent=True
            ) from None
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(OPEN_TIMEOUT_S * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(READ_TIMEOUT_S * 1000),
        ]
        self.cap = cv2.VideoCapture(index, cv2.CAP_ANY, params)
        if spec.width and spec.height:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
        if not self.cap.isOpened():
            raise CaptureError(
                f"camera {index} cannot be opened: it may be in use by another program, "
                "missing, or not permitted for this user"
            )
        self.index = index

    def read(self) -> Image:
        ok, frame = self.cap.read()
        if ok and frame is not None:
            return cast(Image, frame)
        raise CaptureError(f"no frame from camera {self.index}")

    def close(self) -> None:
        self.cap.release()


class AvReader(FrameReader):
    """RTSP/HTTP streams and video files through PyAV: demux packets, then decode them to BGR.

    PyAV releases the GIL inside FFmpeg and holds no lock across opens, so sources open in
    parallel (OpenCV's FFmpeg backend serialised every open behind one process-wide mutex), and
    its ``timeout`` bounds the open and every read through FFmpeg's interrupt callback. The
    demuxed packets pass through ``packets()`` (and ``tap``) before decoding, so the recorder
    takes the camera's encoded stream without a second connection.
    """

    def __init__(
        self,
        spec: pb.SourceSpec,
        *,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.uri = SourceUri(spec.uri)
        self.loop = spec.loop
        self.read_timeout_s = read_timeout_s
        self.is_file = spec.kind == pb.SOURCE_KIND_FILE
        if self.is_file and not os.access(spec.uri, os.R_OK):
            # Retrying cannot make a file appear or become readable: FAILED, not RECONNECTING.
            reason = "does not exist" if not os.path.exists(spec.uri) else "is not readable"
            raise CaptureError(f"file {self.uri.masked!r} {reason}", permanent=True)
        self.open_timeout_s = open_timeout_s
        self.opened_at = time.monotonic()
        av = _load_av()
        options = {} if self.is_file else _stream_options(spec.uri, read_timeout_s)
        try:
            self.container = av.open(
                self.uri.reveal(), options=options, timeout=(open_timeout_s, read_timeout_s)
            )
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            # A file FFmpeg cannot parse will not parse on a retry either.
            raise CaptureError(self._describe("cannot open", exc), permanent=self.is_file) from None
        try:
            self.stream = self.container.streams.video[0]
        except IndexError:
            self.container.close()
            raise CaptureError(f"{self.uri.masked} has no video", permanent=self.is_file) from None
        # Two decoder threads keep up with 1080p H.264 at camera rates; FFmpeg's default (one per
        # core) holds a set of reference frames per thread, tens of MB per source on a big host.
        self.stream.thread_type = "AUTO"
        self.stream.codec_context.thread_count = DECODER_THREADS
        rate = self.stream.average_rate or self.stream.guessed_rate
        fps = float(rate) if rate else 0.0
        # Files are read at their own frame rate, as if they were a camera.
        self.interval = 1.0 / fps if self.is_file and 0 < fps < 1000 else 0.0
        self.next_at = time.monotonic()
        self.tap: PacketTap | None = None
        self._frames = self._decoded()

    def _describe(self, what: str, exc: BaseException) -> str:
        # FFmpeg's messages name the URL it was given: the real one, credentials included.
        return self.uri.redact(f"{what} {self.uri.masked}: {exc}")

    def packets(self) -> Iterator[av.Packet[av.VideoStream]]:
        """The video stream's encoded packets, in order (a file loops when asked to)."""
        import av

        while True:
            try:
                for packet in self.container.demux(self.stream):
                    if packet.size:  # the empty flush packet marks the end of the input
                        if self.tap is not None:
                            self.tap(packet)
                        yield packet
            except av.FFmpegError as exc:
                raise CaptureError(self._describe("no frame from", exc)) from None
            if not self.is_file:
                raise CaptureError(f"{self.uri.masked} ended the stream")
            if not self.loop:
                raise EndOfStream
            self.container.seek(0, stream=self.stream)
            self.stream.codec_context.flush_buffers()

    def _decoded(self) -> Generator[Image, None, None]:
        # The first picture may take the open's whole time (a camera's keyframe interval), each
        # later one the read timeout.
        import av

        deadline = self.opened_at + self.open_timeout_s
        for packet in self.packets():
            try:
                frames = packet.decode()
            except av.FFmpegError:
                # One corrupt packet costs its frame, not the connection.
                frames = []
            if not frames:
                # Packets that never make a picture (garbage, a broken encoder) are as dead as
                # a camera that stopped sending.
                if time.monotonic() > deadline:
                    raise CaptureError(f"packets but no picture from {self.uri.masked}")
                continue
            deadline = time.monotonic() + self.read_timeout_s
            for frame in frames:
                yield cast(Image, frame.to_ndarray(format="bgr24"))

    def read(self) -> Image:
        if self.interval:
            delay = self.next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_at = max(self.next_at + self.interval, time.monotonic())
        try:
            return next(self._frames)
        except StopIteration:
            raise EndOfStream from None

    def close(self) -> None:
        self._frames.close()
        self.container.close()


def _stream_options(uri: str, read_timeout_s: float) -> dict[str, str]:
    micros = str(int(read_timeout_s * 1_000_000))
    if uri.lower().startswith(("rtsp://", "rtsps://")):
        # TCP: no lost UDP packets smearing keyframes, and one socket through any firewall.
        # "timeout" is the RTSP demuxer's socket timeout (it was "stimeout" before FFmpeg 5).
        return {"rtsp_transport": "tcp", "timeout": micros}
    return {"rw_timeout": micros}


def open_reader(
    spec: pb.SourceSpec, fps: float, open_timeout_s: float = OPEN_TIMEOUT_S
) -> FrameReader:
    if spec.kind == pb.SOURCE_KIND_TEST_PATTERN:
        return TestPatternReader(spec, fps)
    if spec.kind == pb.SOURCE_KIND_WEBCAM:
        return WebcamReader(spec)
    return AvReader(spec, open_timeout_s=open_timeout_s)


def _load_av() -> Any:
    """PyAV, imported with the first stream or file source (16 MB a detector without one never
    pays), its logging quieted first: FFmpeg's own log lines print the URLs it opens,
    credentials included, straight to stderr from C."""
    import av
    import av.logging

    if av.logging.get_level() is not None:
        av.logging.set_level(None)
    av.logging.set_libav_level(AV_LOG_QUIET)
    return av
