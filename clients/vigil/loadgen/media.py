"""What the load clients send: camera-like JPEGs and a small video, generated on the spot."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np


def jpegs(count: int = 8, width: int = 640, height: int = 360) -> list[bytes]:
    """Distinct frames of a moving box over a gradient, JPEG q80 (a few tens of KB each)."""
    ramp = np.linspace(30, 200, width, dtype=np.uint8)[None, :, None]
    base = np.broadcast_to(ramp, (height, width, 3)).copy()
    out = []
    for n in range(count):
        image = base.copy()
        x = (n * width // max(count, 1)) % (width - 80)
        cv2.rectangle(image, (x, height // 3), (x + 80, height // 3 + 80), (255, 255, 255), -1)
        cv2.putText(image, f"{n}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 255), 2)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(data.tobytes())
    return out


def small_video(path: pathlib.Path, *, seconds: float = 2.0, fps: int = 10) -> bytes:
    """A 320x240 MPEG-4 clip (OpenCV's writer has mp4v everywhere); returns its bytes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    try:
        for index in range(round(seconds * fps)):
            image = np.full((240, 320, 3), 40, np.uint8)
            x = 10 + (index * 10) % 240
            cv2.rectangle(image, (x, 90), (x + 60, 150), (255, 255, 255), -1)
            writer.write(image)
    finally:
        writer.release()
    return path.read_bytes()
