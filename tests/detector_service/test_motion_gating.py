"""Motion first, end to end: a real RTSP camera plays a scripted scene (a still textured picture,
then a blue square walking across it: a "knife" to the model of ``moving_objects``) into an
always-on source of the real service.

Whether a frame was given to the model shows on the frame itself: ``inference_ms`` is 0 on a frame
that was not detected.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
import re
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import cv2
import grpc
import numpy as np
import pydantic
import pytest

from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.detector_service import moving_objects as mo
from vigil.bench.rtsp import RtspCamera
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.sdk import AsyncDetectorClient

if TYPE_CHECKING:  # the async stub type exists only in the .pyi stubs
    Stub = pb_grpc.DetectorServiceAsyncStub

FPS = 15
STILL_FRAMES = 60  # 4 s of a still picture, then the square crosses in 2 s; looped
WALK_FRAMES = 30
# Where the square walks: along y = 100 from x = 0 to x = 270 (its top-left corner).
WALK = mo.walk((0, 100), (9, 0), WALK_FRAMES)


def backdrop() -> np.ndarray:
    """A grey, textured still scene (no blue: the model sees nothing in it)."""
    rng = np.random.default_rng(7)
    texture = rng.integers(40, 200, (mo.H // 8, mo.W // 8), np.uint8)
    grey = cv2.resize(texture, (mo.W, mo.H), interpolation=cv2.INTER_NEAREST)
    return np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), np.uint8)


def write_scene(directory: pathlib.Path) -> str:
    still = backdrop()
    frames = [still] * STILL_FRAMES
    for x, y in WALK:
        image = still.copy()
        image[y : y + mo.SIDE, x : x + mo.SIDE] = mo.BLUE
        frames.append(image)
    for n, image in enumerate(frames):
        cv2.imwrite(str(directory / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(directory / "%05d.jpg")


@pytest.fixture(scope="module")
def scene_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspCamera]:
    pattern = write_scene(tmp_path_factory.mktemp("scene"))
    mounts = ("a", "b", "c")  # one per test: each mount's scene starts with its first viewer
    with RtspCamera(mounts, width=mo.W, height=mo.H, fps=FPS, keyframe_s=1.0, frames=pattern) as c:
        yield c


@pytest.fixture
def detector_settings(tmp_path: pathlib.Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=mo.build_model(tmp_path / "blue.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=tmp_path / "data",
    )


async def frames(stub: Stub, source_id: str, count: int) -> AsyncIterator[pb.Frame]:
    call = stub.Subscribe(pb.SubscribeRequest(source_id=source_id, omit_jpeg=True))
    try:
        seen = 0
        async for message in call:
            if message.HasField("frame"):
                yield message.frame
                seen += 1
                if seen == count:
                    return
    finally:
        call.cancel()


def knives(frame: pb.Frame) -> list[common_pb2.Detection]:
    return [d for d in frame.detections if d.class_name == "knife"]


async def add(stub: Stub, spec: pb.SourceSpec) -> None:
    await stub.AddSource(pb.AddSourceRequest(source=spec))


async def test_a_still_scene_is_not_detected_until_something_moves(
    detector: DetectorServer, detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    await add(
        detector_stub,
        pb.SourceSpec(id="hall", kind=pb.SOURCE_KIND_STREAM, uri=scene_camera.url("a")),
    )
    still_run = longest_still_run = 0
    found: pb.Frame | None = None
    # Two loops of the scene at most: the still part, then the walk.
    async for frame in frames(detector_stub, "hall", 2 * (STILL_FRAMES + WALK_FRAMES)):
        detected = frame.inference_ms > 0
        still_run = 0 if detected else still_run + 1
        longest_still_run = max(longest_still_run, still_run)
        if knives(frame) and detected and longest_still_run >= STILL_FRAMES // 2:
            found = frame
            break
    # Frames kept flowing through the still part without the model running on them ...
    assert longest_still_run >= STILL_FRAMES // 2
    # ... and the square walking in started detection, which found it.
    assert found is not None
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        counters = (await client.get_source("hall")).counters
    assert counters.frames_with_motion > 0
    assert counters.frames_skipped >= STILL_FRAMES // 2
    assert 0 < counters.frames_detected < counters.frames_published


async def test_motion_under_a_mask_is_not_detected(
    detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    # A band over the square's whole path.
    band = pb.Polygon(
        points=[
            pb.Point(x=0, y=80 / mo.H),
            pb.Point(x=1, y=80 / mo.H),
            pb.Point(x=1, y=160 / mo.H),
            pb.Point(x=0, y=160 / mo.H),
        ]
    )
    spec = pb.SourceSpec(
        id="yard",
        kind=pb.SOURCE_KIND_STREAM,
        uri=scene_camera.url("b"),
        motion=pb.MotionSettings(masks=[band]),
    )
    await add(detector_stub, spec)
    count = 0
    # More than a whole loop: the square walks through the masked band at least once.
    async for frame in frames(detector_stub, "yard", STILL_FRAMES + 2 * WALK_FRAMES + 10):
        count += 1
        # The scene starts still, and the first frame is detected whole: nothing is there yet.
        assert not knives(frame), f"frame {count}"
    source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="yard"))).source
    assert source.counters.frames_with_motion == 0
    # The first frame (whole, before any background is known), and the calibration's refreshes.
    assert source.counters.frames_detected <= 3
    assert source.spec.motion.masks[0] == band


async def test_detect_every_frame_detects_all(
    detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    spec = pb.SourceSpec(
        id="gate",
        kind=pb.SOURCE_KIND_STREAM,
        uri=scene_camera.url("c"),
        motion=pb.MotionSettings(detect_every_frame=True),
    )
    await add(detector_stub, spec)
    got = [f async for f in frames(detector_stub, "gate", STILL_FRAMES)]
    assert all(f.inference_ms > 0 for f in got)
    source = (await detector_stub.GetSource(pb.GetSourceRequest(source_id="gate"))).source
    assert source.counters.frames_skipped == 0
    assert source.counters.frames_detected >= len(got)


def square(*points: tuple[float, float]) -> pb.Polygon:
    return pb.Polygon(points=[pb.Point(x=x, y=y) for x, y in points])


@pytest.mark.parametrize(
    ("motion", "message"),
    [
        (pb.MotionSettings(sensitivity=1.5), "motion.sensitivity must be between 0"),
        (pb.MotionSettings(sensitivity=-0.1), "motion.sensitivity must be between 0"),
        (pb.MotionSettings(sensitivity=math.nan), "motion.sensitivity must be between 0"),
        (
            pb.MotionSettings(masks=[square((0, 0), (1, 1))]),
            r"motion.masks\[0\] needs 3 to 64 points, got 2",
        ),
        (
            pb.MotionSettings(
                masks=[square((0, 0), (1, 0), (1, 1)), square((0, 0), (1.2, 0), (0, 1))]
            ),
            r"motion.masks\[1\]: points are normalised, x and y within 0..1, got \(1.2, 0\)",
        ),
        (
            pb.MotionSettings(masks=[square((0, 0), (math.nan, 0), (0, 1))]),
            r"motion.masks\[0\]: points are normalised",
        ),
    ],
)
async def test_bad_motion_settings_are_refused(
    detector_stub: Stub, motion: pb.MotionSettings, message: str
) -> None:
    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri="rtsp://c/s", motion=motion)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await add(detector_stub, spec)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, refused.value.details() or ""), refused.value.details()


def test_the_refresh_must_come_before_tracks_are_lost() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"motion_refresh_s \(5\) must be below"):
        DetectorSettings(motion_refresh_s=5.0, track_lost_s=5.0)


@pytest.fixture(scope="module")
def stopping_camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspCamera]:
    """The square walks in for 1 s, then lies still for 5 s; looped."""
    directory = tmp_path_factory.mktemp("stopping")
    still = backdrop()
    path = mo.walk((0, 100), (6, 0), FPS) + [(6 * (FPS - 1), 100)] * (5 * FPS)
    for n, (x, y) in enumerate(path):
        image = still.copy()
        image[y : y + mo.SIDE, x : x + mo.SIDE] = mo.BLUE
        cv2.imwrite(str(directory / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    pattern = str(directory / "%05d.jpg")
    with RtspCamera(("d",), width=mo.W, height=mo.H, fps=FPS, keyframe_s=1.0, frames=pattern) as c:
        yield c


async def test_a_still_tracked_object_is_shown_between_slow_refreshes(
    detector_stub: Stub, stopping_camera: RtspCamera
) -> None:
    await add(
        detector_stub,
        pb.SourceSpec(id="desk", kind=pb.SOURCE_KIND_STREAM, uri=stopping_camera.url()),
    )
    run: list[pb.Frame] = []  # frames in a row showing the knife with one track id
    async for frame in frames(detector_stub, "desk", 3 * 6 * FPS):
        ids = {d.track_id for d in knives(frame) if d.HasField("track_id")}
        if len(ids) == 1 and (not run or ids == {run[0].detections[0].track_id}):
            run.append(frame)
        else:
            run = []
        skipped = sum(1 for f in run if f.inference_ms == 0)
        first_skip = next((n for n, f in enumerate(run) if f.inference_ms == 0), len(run))
        # Detected after the model had already been skipped: a refresh, not the walk.
        refreshed = sum(1 for f in run[first_skip:] if f.inference_ms > 0)
        if skipped >= 2 * FPS and refreshed:
            break
    # Lying still, the knife kept its box and its track on frames the model did not run on, and
    # a refresh found it again under the same track.
    assert skipped >= 2 * FPS, [f.inference_ms for f in run]
    assert refreshed


async def test_motion_counters_are_exported_as_metrics(tmp_path: pathlib.Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    settings = DetectorSettings(
        port=0, backend="none", data_dir=tmp_path, metrics_port=metrics_port
    )
    server = await serve(settings)

    def scrape() -> dict[str, float]:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        prefix = "vigil_source_frames_"
        return {
            line.split("{")[0]: float(line.split()[-1])
            for line in lines
            if line.startswith(prefix) and 'source="shapes"' in line
        }

    try:
        # The test pattern's shapes never stop moving; always on, it is gated.
        spec = pb.SourceSpec(
            id="shapes", kind=pb.SOURCE_KIND_TEST_PATTERN, mode=pb.SOURCE_MODE_ALWAYS
        )
        server.registry.add(spec)
        async with asyncio.timeout(30):
            motion = "vigil_source_frames_with_motion_total"
            while (metrics := await asyncio.to_thread(scrape)).get(motion, 0) < 3:  # noqa: ASYNC110 - polling the service
                await asyncio.sleep(0.1)
        assert metrics["vigil_source_frames_detected_total"] >= 3
        assert "vigil_source_frames_skipped_total" in metrics
    finally:
        await server.stop(0)


async def test_updated_motion_settings_apply_at_once(
    detector_stub: Stub, scene_camera: RtspCamera
) -> None:
    spec = pb.SourceSpec(id="lobby", kind=pb.SOURCE_KIND_STREAM, uri=scene_camera.url("a"))
    await add(detector_stub, spec)
    skipped = 0
    async for frame in frames(detector_stub, "lobby", 4 * (STILL_FRAMES + WALK_FRAMES)):
        skipped += frame.inference_ms == 0
        if skipped >= 5:
            break
    assert skipped >= 5  # gated
    spec.motion.detect_every_frame = True
    await detector_stub.UpdateSource(pb.UpdateSourceRequest(source=spec))
    got = [f async for f in frames(detector_stub, "lobby", 40)]
    # The frame in hand when the update came may still have been gated; none after it.
    assert all(f.inference_ms > 0 for f in got[2:]), [f.inference_ms for f in got]
