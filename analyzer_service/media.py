"""Probing and frame sampling of untrusted video files.

Everything here runs inside a child process (see ``isolation``): decoders are large C libraries
fed with files from strangers, so a crash or hang must take down only the child.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Sequence

import av
import cv2
import numpy as np

# OpenCV reports a FOURCC; people and the contract speak codec names.
_FOURCC_CODECS = {
    "avc1": "h264",
    "h264": "h264",
    "x264": "h264",
    "hev1": "hevc",
    "hvc1": "hevc",
    "hevc": "hevc",
    "fmp4": "mpeg4",
    "mp4v": "mpeg4",
    "xvid": "mpeg4",
    "divx": "mpeg4",
    "mjpg": "mjpeg",
    "vp80": "vp8",
    "vp90": "vp9",
    "av01": "av1",
}


class MediaError(Exception):
    """The file is not a usable video; the message says why, for people."""


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int
    codec: str


@dataclasses.dataclass(frozen=True)
class FrameFile:
    """One sampled frame: where it was asked for, where it really is, and its JPEG."""

    target_s: float
    time_s: float
    index: int
    path: str
    # Frames decoded to reach this one: bounded by the keyframe interval, whatever the length.
    decoded: int
    # How unlike the previous frame of the same call it looks, 0 (same) to 1; 0 for the first
    # frame and when change scores were not asked for.
    change: float = 0.0


def codec_name(fourcc: int) -> str:
    raw = fourcc.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ").lower()
    return _FOURCC_CODECS.get(raw, raw)


def probe(path: str) -> ProbeResult:
    """Read duration, rate, size and codec, and decode the first frame to prove it decodes."""
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise MediaError("not a readable video file")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        codec = codec_name(int(cap.get(cv2.CAP_PROP_FOURCC)))
        ok, _ = cap.read()
    finally:
        cap.release()
    if not ok:
        raise MediaError("the video contains no decodable frames")
    if not math.isfinite(fps) or fps <= 0 or frame_count <= 0:
        # Some containers (Matroska, WebM) keep no frame count; the container duration will do.
        fps, frame_count = _rate_from_container(path, fps)
    if width <= 0 or height <= 0:
        raise MediaError("the video has no frame size")
    return ProbeResult(
        duration_s=frame_count / fps,
        fps=fps,
        width=width,
        height=height,
        frame_count=frame_count,
        codec=codec,
    )


def _rate_from_container(path: str, fps: float) -> tuple[float, int]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if rate is not None and rate > 0:
            fps = float(rate)
        duration = container.duration / av.time_base if container.duration else 0.0
    if not math.isfinite(fps) or fps <= 0 or duration <= 0:
        raise MediaError("the video declares no frame rate or duration")
    return fps, max(1, round(duration * fps))


def sample_frames(
    path: str,
    targets: Sequence[float],
    out_dir: str,
    *,
    max_side: int,
    jpeg_quality: int,
    prefix: str = "frame",
    thumbnail_side: int = 0,
    slack_s: float = 0.0,
) -> list[FrameFile]:
    """Decode the frame shown at each target time and store it as a JPEG in ``out_dir``.

    Each target costs one seek to the keyframe before it plus decoding forward to it, so the cost
    depends on the keyframe interval, not on the length of the video. With ``thumbnail_side`` set,
    each frame also gets a scene-change score against the frame before it (see ``change_score``).

    ``slack_s`` lets the keyframe the seek lands on stand for the target when it is at most that
    many seconds before it (its own time is reported): a coarse grid of candidates over a long
    video then decodes one frame each instead of up to a keyframe interval of them. Otherwise
    decoding goes on to the exact frame.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames: list[FrameFile] = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        if time_base is None:
            raise MediaError("the video stream has no time base")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        # A frame counts as "at" the target when it starts within half a frame of it.
        tolerance = 0.5 / fps if fps > 0 else 0.0
        start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        previous: np.ndarray | None = None
        for number, target in enumerate(sorted(targets)):
            frame, decoded = _frame_at(container, stream, start + target, tolerance, slack_s)
            if frame is None:
                raise MediaError(f"no frame could be decoded near {target:.2f} s")
            time_s = max(0.0, float(frame.time or 0.0) - start)
            full = frame.to_ndarray(format="bgr24")
            change = 0.0
            if thumbnail_side:
                thumb = thumbnail(full, thumbnail_side)
                if previous is not None:
                    change = change_score(previous, thumb)
                previous = thumb
            image = _fit(full, max_side)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                raise MediaError("a frame could not be encoded as JPEG")
            name = out / f"{prefix}_{number:04d}_{round(time_s * 1000):010d}ms.jpg"
            name.write_bytes(jpeg.tobytes())
            frames.append(
                FrameFile(
                    target_s=target,
                    time_s=time_s,
                    index=round(time_s * fps) if fps > 0 else number,
                    path=str(name),
                    decoded=decoded,
                    change=change,
                )
            )
    return frames


def thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    """A small grayscale copy, the input of ``change_score``."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA)


def change_score(a: np.ndarray, b: np.ndarray) -> float:
    """How unlike two thumbnails are, 0 to 1: the larger of two cheap measures.

    The histogram distance (total variation over 32 grey levels) sees a change of light and
    colour wherever it happens; the mean pixel difference (scaled so that a difference of half the
    grey range counts fully) sees a change of layout that keeps the same histogram.
    """
    bins = 32
    ha = np.bincount((a // (256 // bins)).ravel(), minlength=bins) / a.size
    hb = np.bincount((b // (256 // bins)).ravel(), minlength=bins) / b.size
    histogram = 0.5 * float(np.abs(ha - hb).sum())
    pixels = float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) / 127.5
    return min(1.0, max(histogram, pixels))


def _frame_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    target: float,
    tolerance: float,
    slack: float = 0.0,
) -> tuple[av.VideoFrame | None, int]:
    assert stream.time_base is not None
    # Land on the keyframe at or before the target, then decode forward to the target itself.
    container.seek(
        max(0, int(target / stream.time_base)), stream=stream, backward=True, any_frame=False
    )
    last: av.VideoFrame | None = None
    decoded = 0
    for frame in container.decode(stream):
        decoded += 1
        if frame.time is None:
            continue
        if frame.time >= target - tolerance:
            return frame, decoded
        if last is None and frame.time >= target - slack:
            return frame, decoded  # the keyframe reached is close enough
        last = frame
    # Past the last frame (durations round up): the last frame is the one shown at the end.
    return last, decoded


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
