"""A small person far from the camera is found through a full-resolution crop around its motion,
where the same picture given whole to the offline YOLOv3-tiny shows no person (shrunk to the
model's 416 px input, the 50 px person is 17 px high and 29 px wide)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import cv2
import grpc
import numpy as np
import pytest
from skimage import data

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from vigil.bench.rtsp import RtspCamera
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

W, H = 1280, 720
FPS = 15
PERSON_HEIGHT = 50
STILL_FRAMES = 15
WALK = [(300 + 8 * n, 330) for n in range(60)]


def person() -> np.ndarray:
    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    width = int(photo.shape[1] * PERSON_HEIGHT / photo.shape[0])
    return np.asarray(cv2.resize(photo, (width, PERSON_HEIGHT), interpolation=cv2.INTER_AREA))


def picture(at: tuple[int, int] | None) -> np.ndarray:
    canvas = np.full((H, W, 3), 110, np.uint8)
    if at is not None:
        small = person()
        x, y = at
        canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


def jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def far_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspCamera]:
    directory = tmp_path_factory.mktemp("far")
    scene = [None] * STILL_FRAMES + WALK
    for n, at in enumerate(scene):
        (directory / f"{n:05d}.jpg").write_bytes(jpeg(picture(at)))
    pattern = str(directory / "%05d.jpg")
    with RtspCamera(("far",), width=W, height=H, fps=FPS, keyframe_s=1.0, frames=pattern) as cam:
        yield cam


async def test_a_small_far_person_is_found_in_a_crop_around_its_motion(
    tmp_path: pathlib.Path, far_camera: RtspCamera
) -> None:
    settings = DetectorSettings(port=0, backend="yolo", data_dir=tmp_path, max_fps=FPS)
    server: DetectorServer = await serve(settings)
    try:
        address = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.DetectorServiceStub(channel)
            # The yardstick: each picture of the walk, whole, shows the model no person.
            for at in WALK[::4]:
                request = pb.DetectRequest(jpeg=jpeg(picture(at)))
                async for answer in stub.Detect(iter([request])):
                    assert "person" not in [d.class_name for d in answer.detections]
            spec = pb.SourceSpec(id="far", kind=pb.SOURCE_KIND_STREAM, uri=far_camera.url())
            await stub.AddSource(pb.AddSourceRequest(source=spec))
            call = stub.Subscribe(pb.SubscribeRequest(source_id="far", omit_jpeg=True))
            found = None
            seen = 0
            try:
                async for message in call:
                    seen += message.HasField("frame")
                    people = [d for d in message.frame.detections if d.class_name == "person"]
                    # Several crossings at most: on a loaded machine a crossing may be seen
                    # in few frames, and the model is not sure of the person in every one.
                    if people or seen > 8 * (STILL_FRAMES + len(WALK)):
                        found = people
                        break
            finally:
                call.cancel()
            assert found, f"no person in {seen} frames"
            # Where the walk is: on the row of the scene, not somewhere else.
            box = found[0].box
            assert box.y_min >= 330 - 20, box
            assert box.y_max <= 330 + PERSON_HEIGHT + 20, box
            counters = (await stub.GetSource(pb.GetSourceRequest(source_id="far"))).source.counters
            assert counters.frames_with_motion > 0
    finally:
        await server.stop(0)
