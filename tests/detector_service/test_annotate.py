from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector_service.annotate import (
    WEAPON_COLOUR,
    InvalidImage,
    decode_image,
    draw,
    encode_jpeg,
    image_size,
)
from detector_service.detections import Detections


def test_jpeg_round_trip_and_header_size() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    data = encode_jpeg(image, 80)
    assert image_size(data) == (1280, 720)
    assert decode_image(data).shape == (720, 1280, 3)
    ok, png = cv2.imencode(".png", image[:10, :20])
    assert ok
    assert image_size(png.tobytes()) == (20, 10)


@pytest.mark.parametrize("data", [b"", b"garbage", b"<html></html>", b"\xff\xd8\xff"])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_image(data)


def test_absurd_dimensions_are_refused_before_decoding() -> None:
    data = bytearray(encode_jpeg(np.zeros((8, 8, 3), np.uint8), 80))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"  # height and width 65535
    assert image_size(bytes(data)) == (65535, 65535)
    with pytest.raises(InvalidImage, match="too large"):
        decode_image(bytes(data))


def label_patch(text: str, colour: tuple[int, int, int]) -> np.ndarray:
    """``text`` in white on a bar of ``colour``, as a label is meant to look."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    patch = np.zeros((th + base + 5, tw + 7, 3), np.uint8)
    patch[:] = colour
    white = (255, 255, 255)
    cv2.putText(patch, text, (3, th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, white, 1, cv2.LINE_AA)
    return patch


def test_label_names_the_class_and_its_confidence() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    knife = Detections(
        xyxy=np.array([[60, 120, 200, 200]], np.float32),
        confidence=np.array([0.87], np.float32),
        class_id=np.array([43], np.int32),
        class_name=("knife",),
        model="test",
    )
    draw(image, knife, ["knife"])
    expected = label_patch("knife 0.87", WEAPON_COLOUR)
    height, width = expected.shape[:2]
    top = 120 - height + 1  # the bar ends on the box's top edge
    # The rows above the box outline (2 px thick) hold the whole text.
    drawn = image[top : 120 - 2, 60 : 60 + width]
    assert np.array_equal(drawn, expected[: drawn.shape[0]])
    # The check can tell a different class or confidence apart.
    for other in ("knife 0.78", "scissors 0.87"):
        wrong = label_patch(other, WEAPON_COLOUR)[: drawn.shape[0], :width]
        assert wrong.shape != drawn.shape or not np.array_equal(drawn, wrong)
