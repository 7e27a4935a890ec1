from __future__ import annotations

import numpy as np

from detector_service.detections import Detections


def test_yolo_rows_are_decoded_filtered_and_suppressed() -> None:
    names = ["person", "bicycle", "knife"]
    rows = np.array(
        [
            # cx, cy, w, h, obj, scores... (scores already include objectness, as OpenCV gives them)
            [0.5, 0.5, 0.2, 0.4, 0.9, 0.85, 0.0, 0.0],
            [0.51, 0.5, 0.2, 0.4, 0.9, 0.80, 0.0, 0.0],  # overlaps the first: suppressed
            [0.1, 0.1, 0.1, 0.1, 0.9, 0.0, 0.0, 0.6],
            [0.9, 0.9, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1],  # below the threshold
        ],
        np.float32,
    )
    found = Detections.from_yolo_rows(
        rows,
        width=1000,
        height=500,
        names=names,
        confidence=0.3,
        nms_iou=0.45,
        model="m",
        objectness=True,
    )
    assert sorted(found.class_name) == ["knife", "person"]
    person = found.class_name.index("person")
    np.testing.assert_allclose(found.xyxy[person], [400, 150, 600, 350], atol=1e-3)
    assert found.confidence[person] == np.float32(0.85)


def test_roboflow_centre_boxes_become_corners() -> None:
    response = {
        "predictions": [
            {
                "x": 100,
                "y": 50,
                "width": 40,
                "height": 20,
                "confidence": 0.9,
                "class": "gun",
                "class_id": 0,
                "detection_id": "a",
            },
        ],
        "image": {"width": 640, "height": 480},
    }
    found = Detections.from_roboflow(response, model="roboflow:guns/1")
    assert found.class_name == ("gun",)
    np.testing.assert_allclose(found.xyxy[0], [80, 40, 120, 60])
    (proto,) = found.to_proto(weapon_classes={"gun"})
    assert proto.is_weapon
    assert proto.model == "roboflow:guns/1"
    assert (proto.box.x_min, proto.box.y_max) == (80, 60)


def test_filter_by_allow_list_and_per_class_threshold() -> None:
    found = Detections(
        xyxy=np.zeros((3, 4), np.float32),
        confidence=np.array([0.9, 0.4, 0.7], np.float32),
        class_id=np.array([0, 1, 2], np.int32),
        class_name=("person", "knife", "car"),
        model="m",
    )
    kept = found.filter(allow={"person", "knife"}, thresholds={"knife": 0.5})
    assert kept.class_name == ("person",)
    assert len(found.filter(thresholds={"knife": 0.3})) == 3


def test_empty_rows() -> None:
    empty = Detections.from_yolo_rows(
        np.zeros((0, 85), np.float32),
        width=1,
        height=1,
        names=[],
        confidence=0.5,
        nms_iou=0.5,
        model="m",
        objectness=True,
    )
    assert len(empty) == 0
    assert empty.to_proto() == []


def test_track_ids_follow_their_boxes_into_protos() -> None:
    found = Detections(
        xyxy=np.array([[0, 0, 10, 10], [5, 5, 50, 50], [-20, 0, -5, 10]], np.float32),
        confidence=np.array([0.9, 0.4, 0.7], np.float32),
        class_id=np.array([0, 1, 2], np.int32),
        class_name=("person", "knife", "car"),
        model="m",
    ).with_track_ids(np.array([7, -1, 9], np.int32))
    # Filtering and clipping (the car lies outside a 40x40 frame) keep each id with its box.
    assert found.filter(allow={"person", "car"}).track_ids() == [7, 9]
    assert found.clipped(40, 40).track_ids() == [7, None]
    person, knife, car = found.to_proto()
    assert (person.track_id, car.track_id) == (7, 9)
    assert not knife.HasField("track_id")
    assert Detections.empty("m").track_ids() == []
