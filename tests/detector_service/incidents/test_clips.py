"""Incident clips: a readable MJPEG AVI around the opening, its path on the incident."""

from __future__ import annotations

import asyncio
import pathlib
import time

import cv2
import pytest

from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import Camera, det, drain, kinds
from vigil.detector.v1 import detector_service_pb2 as pb


def read_avi(path: pathlib.Path) -> tuple[int, float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames, size = 0, (0, 0)
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames += 1
        size = (image.shape[1], image.shape[0])
    capture.release()
    return frames, fps, size


async def wait_for_file(path: pathlib.Path) -> None:
    """Wait up to ten seconds for the clip writer's thread to finish ``path``."""
    deadline = time.monotonic() + 10
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


async def test_clip_covers_pre_and_post_and_is_on_the_closed_event(
    trackers: Trackers, tmp_path: pathlib.Path
) -> None:
    clip_dir = tmp_path / "clips"
    tracker = trackers.make(clip_dir=clip_dir, pre_s=2.0, post_s=1.5, close_after_s=3.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)  # 10 fps
    cam.frames(40)  # quiet frames fill the ring
    cam.frames(3, det("knife"))  # opens on the third
    (opened,) = await drain(sub)
    assert opened.incident.clip_path == ""  # not written yet
    cam.frames(20, det("knife"))  # past the post window: the clip is handed to its writer

    path = clip_dir / f"{opened.incident.id}.avi"
    await wait_for_file(path)
    cam.frames(30)  # closes
    (closed,) = await drain(sub)
    assert closed.type == pb.INCIDENT_EVENT_TYPE_CLOSED
    assert closed.incident.clip_path == str(path)

    frames, fps, size = read_avi(path)
    assert frames == pytest.approx((2.0 + 1.5) * 10, abs=2)
    assert fps == pytest.approx(10, rel=0.1)
    assert size == (160, 120)
    assert list(clip_dir.iterdir()) == [path]  # no temporary file left behind

    stored = await tracker.store.get(closed.incident.id, include_snapshot=False)
    assert stored is not None
    assert stored.clip_path == str(path)


async def test_clip_finished_after_the_close_lands_in_the_history(
    trackers: Trackers, tmp_path: pathlib.Path
) -> None:
    clip_dir = tmp_path / "clips"
    tracker = trackers.make(clip_dir=clip_dir, pre_s=1.0, post_s=4.0, close_after_s=0.5)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(20)
    cam.frames(3, det("gun"))
    cam.frames(10)
    opened, closed = await drain(sub)
    assert kinds([opened, closed]) == ["OPENED", "CLOSED"]
    assert closed.incident.clip_path == ""
    cam.frames(40)  # the post window ends

    path = clip_dir / f"{opened.incident.id}.avi"
    await wait_for_file(path)
    deadline = time.monotonic() + 5
    while True:
        stored = await tracker.store.get(opened.incident.id)
        assert stored is not None
        if stored.clip_path or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert stored.clip_path == str(path)
    frames, _, _ = read_avi(path)
    assert frames == pytest.approx((1.0 + 4.0) * 10, abs=2)


async def test_end_source_writes_a_short_clip(trackers: Trackers, tmp_path: pathlib.Path) -> None:
    clip_dir = tmp_path / "clips"
    tracker = trackers.make(clip_dir=clip_dir, pre_s=1.0, post_s=10.0)
    sub = tracker.subscribe()
    cam = Camera(tracker)
    cam.frames(10)
    cam.frames(3, det("knife"))
    cam.frames(5, det("knife"))
    tracker.end_source("cam")  # the camera stopped before the post window ended
    opened, _ = await drain(sub)
    path = clip_dir / f"{opened.incident.id}.avi"
    await wait_for_file(path)
    frames, _, _ = read_avi(path)
    assert frames == pytest.approx(10 + 6, abs=1)
