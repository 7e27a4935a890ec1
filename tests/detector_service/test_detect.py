"""The Detect stream, end to end against the real offline model."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.settings import DetectorSettings
from tests.detector_service.scenes import jpeg, people_scene
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(port=0, backend="yolo", data_dir=tmp_path)


async def requests(frames: list[bytes], annotate: bool = False) -> AsyncIterator[pb.DetectRequest]:
    for i, frame in enumerate(frames):
        ts = Timestamp()
        ts.FromNanoseconds(1_700_000_000_000_000_000 + i * 66_000_000)
        yield pb.DetectRequest(
            source_id="lobby", sequence=i + 1, capture_time=ts, jpeg=frame, annotate=annotate
        )


async def test_people_are_detected_in_order(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    frames = [jpeg(people_scene(offset=dx)) for dx in (0, 20, 40, 60, 80)]
    responses = [r async for r in detector_stub.Detect(requests(frames))]

    assert [r.sequence for r in responses] == [1, 2, 3, 4, 5]
    assert all(r.source_id == "lobby" for r in responses)
    assert [r.capture_time.ToNanoseconds() for r in responses] == [
        1_700_000_000_000_000_000 + i * 66_000_000 for i in range(5)
    ]
    for response in responses:
        assert not response.HasField("error")
        assert (response.width, response.height) == (1280, 720)
        people = [d for d in response.detections if d.class_name == "person"]
        assert len(people) >= 2, response.detections
        assert all(d.model == "yolov3-tiny-coco" and d.confidence >= 0.3 for d in people)
        assert all(0 <= d.box.x_min < d.box.x_max <= 1280 for d in people)
        assert response.annotated_jpeg == b""


async def test_annotated_frame_has_boxes_drawn(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    scene = people_scene()
    (response,) = [r async for r in detector_stub.Detect(requests([jpeg(scene)], annotate=True))]
    annotated = cv2.imdecode(np.frombuffer(response.annotated_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert annotated is not None
    assert annotated.shape == scene.shape
    box = response.detections[0].box
    # The box outline is drawn in green where the plain scene had no green edge.
    edge = annotated[int(box.y_max) - 1, int(box.x_min) + 5 : int(box.x_max) - 5]
    assert (edge[:, 1].astype(int) - edge[:, 2].astype(int)).mean() > 80


async def test_garbage_frame_gets_an_error_and_the_stream_goes_on(
    detector_stub: pb_grpc.DetectorServiceAsyncStub,
) -> None:
    frames = [jpeg(people_scene()), b"not a jpeg at all", b"", jpeg(people_scene())]
    responses = [r async for r in detector_stub.Detect(requests(frames))]

    assert [r.sequence for r in responses] == [1, 2, 3, 4]
    assert [r.error.code for r in responses] == ["", "INVALID_IMAGE", "INVALID_IMAGE", ""]
    assert responses[3].detections
