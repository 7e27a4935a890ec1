from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector_service.annotate import InvalidImage, decode_image, encode_jpeg, image_size


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
