"""The built-in test-pattern source: moving shapes and a clock on a 1280×720 frame.

It needs no camera, so ``make run`` and the tests always have a live source. The clock shows the
capture time to the millisecond, which makes latency visible by eye.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from detector_service.backends.base import Image


class TestPattern:
    """Renders frame ``n`` of the pattern; cheap enough (about 2 ms) to run at any publish rate."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, width: int = 1280, height: int = 720) -> None:
        self.width, self.height = width, height
        # A vertical gradient, rendered once; each frame starts as a copy of it.
        ramp = np.linspace(40, 90, height, dtype=np.float32)[:, None, None]
        self.background = np.broadcast_to(
            np.concatenate([ramp * 0.8, ramp * 0.9, ramp], axis=2), (height, width, 3)
        ).astype(np.uint8)

    def render(self, n: int, now: float | None = None) -> Image:
        now = time.time() if now is None else now
        frame = self.background.copy()
        w, h, t = self.width, self.height, n / 15.0
        # Three shapes bouncing on Lissajous paths so consecutive frames always differ.
        cx = int(w / 2 + (w / 2 - 120) * math.sin(t * 0.9))
        cy = int(h / 2 + (h / 2 - 120) * math.sin(t * 1.3))
        cv2.circle(frame, (cx, cy), 70, (60, 180, 255), -1, cv2.LINE_AA)
        rx = int(w / 2 + (w / 2 - 160) * math.cos(t * 0.7))
        ry = int(h / 2 + (h / 2 - 140) * math.sin(t * 0.5))
        cv2.rectangle(frame, (rx - 90, ry - 60), (rx + 90, ry + 60), (200, 120, 60), -1)
        tx = int(w / 2 + (w / 3) * math.sin(t * 1.1 + 1))
        ty = int(h / 2 + (h / 3) * math.cos(t * 0.8))
        triangle = np.array([[tx, ty - 70], [tx - 70, ty + 50], [tx + 70, ty + 50]], np.int32)
        cv2.fillPoly(frame, [triangle], (90, 200, 90), cv2.LINE_AA)
        clock = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d} UTC"
        cv2.putText(frame, clock, (40, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 3)
        cv2.putText(
            frame,
            f"Vigil test pattern  #{n}",
            (40, h - 40),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.0,
            (220, 220, 220),
            2,
        )
        return frame
