"""What the model is shown of an incident: the snapshot, full-resolution crops of its weapon boxes
(cut before boxes are drawn) and the frames before it, within the limit of pictures."""

from __future__ import annotations

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.frame_work import weapon_crops
from detector_service.verification import _Work, pictures_of
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

OPENED_NS = 1_700_000_000 * 10**9


def knife(x: int, y: int, confidence: float) -> common_pb2.Detection:
    box = common_pb2.BoundingBox(x_min=x, y_min=y, x_max=x + 40, y_max=y + 40)
    return common_pb2.Detection(class_name="knife", confidence=confidence, is_weapon=True, box=box)


def encoded(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_crops_are_cut_at_full_resolution_before_boxes_are_drawn() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[300:340, 600:640] = (255, 0, 0)
    person = common_pb2.Detection(class_name="person", confidence=0.9, is_weapon=False)
    (crop,) = weapon_crops(frame, [person, knife(600, 300, 0.8)])
    cv2.rectangle(frame, (600, 300), (640, 340), (0, 255, 0), 2)  # drawn afterwards
    # 40 px box, 10 px of context each side (a quarter of its side), not scaled.
    assert crop.pixels.shape == (61, 61, 3)
    assert crop.detection.class_name == "knife"
    assert not (crop.pixels == (0, 255, 0)).all(axis=2).any()
    assert (crop.pixels[10:50, 10:50] == (255, 0, 0)).all()


def test_snapshot_crops_by_confidence_then_the_latest_frames() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    crops = weapon_crops(frame, [knife(10, 10, 0.5), knife(200, 100, 0.9)])
    opened = Timestamp()
    opened.FromNanoseconds(OPENED_NS)
    incident = pb.Incident(
        id="i", source_id="gate", class_name="knife", opened_at=opened, snapshot_jpeg=b"snap"
    )
    frames = [(OPENED_NS - n * 500_000_000, b"frame%d" % n) for n in (4, 3, 2, 1)]
    pictures = pictures_of(_Work(incident, crops, frames), most=5)
    assert [p.label for p in pictures] == [
        "snapshot: the frame the incident opened on",
        "crop of knife (0.90) at full resolution",
        "1.5 s before",
        "1.0 s before",
        "0.5 s before",
    ]
    assert pictures[0].jpeg == b"snap"
    assert [p.jpeg for p in pictures[2:]] == [b"frame3", b"frame2", b"frame1"]
    # At the least: the snapshot and the best crop.
    assert [p.label for p in pictures_of(_Work(incident, crops, frames), most=2)] == [
        "snapshot: the frame the incident opened on",
        "crop of knife (0.90) at full resolution",
    ]


def test_after_a_restart_the_crops_come_from_the_snapshot() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[100:140, 200:240] = (255, 0, 0)
    opened = Timestamp()
    opened.FromNanoseconds(OPENED_NS)
    incident = pb.Incident(
        id="i",
        source_id="gate",
        class_name="knife",
        opened_at=opened,
        snapshot_jpeg=encoded(frame),
        detections=[knife(200, 100, 0.9)],
    )
    snapshot, crop = pictures_of(_Work(incident, (), []), most=4)
    assert snapshot.jpeg == incident.snapshot_jpeg
    assert decoded(crop.jpeg).shape == (61, 61, 3)
