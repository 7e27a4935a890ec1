"""Scripted scenes of moving objects for the tiny ONNX model whose boxes follow them
(``vigil.devtools.knife_model``: a blue square on black is a knife wherever it is)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from vigil.devtools.knife_model import BLUE, NAMES, PAD_Y, SCALE, SIDE, SIZE, build_model

W, H = 320, 240
__all__ = ["BLUE", "NAMES", "PAD_Y", "SCALE", "SIDE", "SIZE", "build_model"]


# A frame's objects: the top-left corners of its blue squares, in frame pixels.
Scene = Sequence[tuple[int, int]]


def frame(squares: Scene) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    for x, y in squares:
        image[y : y + SIDE, x : x + SIDE] = BLUE
    return image


def jpeg(squares: Scene) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame(squares), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def write_video(path: pathlib.Path, scenes: Sequence[Scene], fps: float) -> pathlib.Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for squares in scenes:
        writer.write(frame(squares))
    writer.release()
    return path


def walk(start: tuple[int, int], step: tuple[int, int], frames: int) -> list[tuple[int, int]]:
    """Positions of a square moving by ``step`` pixels a frame."""
    return [(start[0] + i * step[0], start[1] + i * step[1]) for i in range(frames)]
