"""Drawing detections onto frames and encoding frames as JPEG."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

import cv2
import numpy as np

from detector_service.backends.base import Image
from detector_service.detections import Detections

WEAPON_COLOUR = (0, 0, 255)  # BGR red
OTHER_COLOUR = (0, 200, 0)


class InvalidImage(ValueError):
    """The bytes are not a decodable image."""


def draw(image: Image, detections: Detections, weapon_classes: Collection[str]) -> Image:
    """Draw boxes and "class 0.87" labels in place; weapons in red, everything else in green.

    A tracked box's label names its track too: "knife #3 0.87".
    """
    for (x0, y0, x1, y1), conf, name, track in zip(
        detections.xyxy.astype(np.int32).tolist(),
        detections.confidence.tolist(),
        detections.class_name,
        detections.track_ids(),
        strict=True,
    ):
        colour = WEAPON_COLOUR if name in weapon_classes else OTHER_COLOUR
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2)
        label = f"{name} {conf:.2f}" if track is None else f"{name} #{track} {conf:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        top = max(y0 - th - base - 4, 0)
        cv2.rectangle(image, (x0, top), (x0 + tw + 6, top + th + base + 4), colour, -1)
        cv2.putText(
            image,
            label,
            (x0 + 3, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return image


def encode_jpeg(image: Image, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF or a PNG's IHDR header, without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None


def decode_image(data: bytes, *, max_pixels: int = 8192 * 8192) -> Image:
    """Decode untrusted JPEG or PNG bytes; absurd dimensions are refused before any decoding."""
    size = image_size(data)
    if size is None:
        raise InvalidImage("not a JPEG or PNG image")
    width, height = size
    if width * height > max_pixels:
        raise InvalidImage(f"image too large ({width}×{height}; at most {max_pixels} pixels)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidImage("image data is corrupt")
    return cast(Image, image)
