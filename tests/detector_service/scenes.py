"""Test scenes built from photographs that ship inside scikit-image (nothing is downloaded)."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from detector_service.backends.base import Image


def people_scene(offset: int = 0, height: int = 220) -> Image:
    """A 1280×720 scene with four small people; YOLOv3-tiny misses them when they fill the frame."""
    canvas = np.full((720, 1280, 3), 110, np.uint8)
    photos = [
        cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR),
        cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR),
    ]
    x = 40 + offset
    for i, photo in enumerate(photos * 2):
        width = int(photo.shape[1] * height / photo.shape[0])
        small = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
        y = 250 + (i % 2) * 120
        canvas[y : y + height, x : x + width] = small
        x += width + 60
    return canvas


def jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()
