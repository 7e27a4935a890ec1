"""Camera health, live: scripted scenes played by a real RTSP camera, checked by the live pipeline.

Each scene is a short script of JPEG frames (a live picture always carries sensor noise that
differs from frame to frame), looped by the camera: healthy, then the harm, then healthy again,
so every problem is raised and then cleared. Thresholds are shortened through the settings, as
an operator would set them; nothing is timed, conditions are polled with generous deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import cv2
import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest
from skimage import data

from detector_service import backends
from detector_service.backends.base import Image
from detector_service.batcher import InferenceBatcher
from detector_service.health_monitor import HealthMonitor
from detector_service.pipeline import LiveSource
from detector_service.server import serve
from detector_service.settings import DetectorSettings
from detector_service.source_store import SourceStore
from detector_service.sources import SourceRegistry, load_sources_file
from vigil.bench.rtsp import RtspCamera
from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

W, H, FPS = 320, 240, 10
_PANORAMA = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (W + 160, H + 80))
Kind: TypeAlias = pb.SourceEventKind.ValueType
FROZEN = pb.SOURCE_EVENT_KIND_CAMERA_FROZEN
COVERED = pb.SOURCE_EVENT_KIND_CAMERA_COVERED
DEFOCUSED = pb.SOURCE_EVENT_KIND_CAMERA_DEFOCUSED
MOVED = pb.SOURCE_EVENT_KIND_CAMERA_MOVED
DEADLINE_S = 120
Picture = Callable[[int], Image]


def view(dx: int = 0, dy: int = 0) -> Image:
    """The camera's picture when aimed (dx, dy) pixels away from where it was installed."""
    return np.ascontiguousarray(_PANORAMA[40 + dy : 40 + dy + H, 80 + dx : 80 + dx + W])


def grey(image: Image, gain: float, offset: float) -> Image:
    """Infrared night mode: the same scene without colour, darker or brighter."""
    level = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) * gain + offset
    return np.asarray(cv2.cvtColor(np.clip(level, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))


def blurred(image: Image) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), 5.0), np.uint8)


def uniform(level: int) -> Image:
    return np.full((H, W, 3), level, np.uint8)


def walker(i: int) -> Image:
    """Someone crossing the scene close to the camera."""
    picture = view()
    x = (10 * i) % (W - 60)
    picture[60:220, x : x + 60] = (40, 50, 60)
    return picture


def still(image: Image) -> Picture:
    return lambda _: image


@dataclass(frozen=True)
class Frozen:
    """A camera re-sending one picture (noise included) over and over."""

    image: Image


def script(
    directory: pathlib.Path, *segments: tuple[float, Picture | Frozen], sigma: float = 2.0
) -> str:
    """Write the frames of ``segments`` (seconds, picture of the i-th frame) for the camera.

    Every frame gets fresh sensor noise, as a live camera's would, except a frozen one.
    """
    rng = np.random.default_rng(7)
    n = 0
    for seconds, picture in segments:
        for i in range(round(seconds * FPS)):
            noise = rng.standard_normal((H, W, 3), dtype=np.float32) * sigma
            if isinstance(picture, Frozen):
                image = picture.image
            else:
                image = np.clip(picture(i) + noise, 0, 255).astype(np.uint8)
            cv2.imwrite(str(directory / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            n += 1
    return str(directory / "%05d.jpg")


def frozen(image: Image) -> Frozen:
    noise = np.random.default_rng(1).normal(0, 2.0, image.shape)
    return Frozen(np.clip(image + noise, 0, 255).astype(np.uint8))


def health_settings(tmp_path: pathlib.Path, **overrides: float) -> DetectorSettings:
    values: dict[str, float] = {
        "health_checks_per_s": 4.0,
        "health_frozen_after_s": 2.0,
        "health_covered_after_s": 1.5,
        "health_defocus_after_s": 2.0,
        "health_moved_after_s": 2.0,
        "health_clear_after_s": 1.0,
        "health_ptz_settle_s": 1.5,
        "max_fps": 5.0,
    } | overrides
    return DetectorSettings(port=0, backend="none", data_dir=tmp_path).model_copy(update=values)


@dataclass
class Watched:
    source: LiveSource
    events: list[tuple[pb.SourceEvent, bytes | None]] = field(default_factory=list)

    def kinds(self, cleared: bool | None = None) -> list[Kind]:
        return [e.kind for e, _ in self.events if cleared in (None, e.cleared)]

    def has(self, kind: Kind, cleared: bool) -> bool:
        return any(e.kind == kind and e.cleared == cleared for e, _ in self.events)


@contextlib.asynccontextmanager
async def watched(
    tmp_path: pathlib.Path, frames: str, ptz: bool = False, **overrides: float
) -> AsyncIterator[Watched]:
    """A camera playing ``frames``, checked by the live pipeline, its events collected."""
    settings = health_settings(tmp_path, **overrides)
    batcher = InferenceBatcher(backends.create(settings))
    store = SourceStore(tmp_path / "sources.sqlite3")
    events: list[tuple[pb.SourceEvent, bytes | None]] = []
    monitor = HealthMonitor(settings, on_event=lambda e, jpeg: events.append((e, jpeg)))
    registry = SourceRegistry(settings, batcher, store, health=monitor)
    try:
        with RtspCamera(("cam",), width=W, height=H, fps=FPS, keyframe_s=1.0, frames=frames) as cam:
            spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=cam.url(), ptz=ptz)
            source = registry.add(spec)
            assert source.always  # captured and checked with nobody watching
            yield Watched(source, events)
            registry.close()
            await asyncio.to_thread(registry.join, 10.0)
    finally:
        registry.close()
        await asyncio.to_thread(monitor.close)
        await asyncio.to_thread(batcher.close)
        store.close()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not condition():  # noqa: ASYNC110 - polling what the worker thread changes
            await asyncio.sleep(0.1)


def problems(source: LiveSource) -> list[Kind]:
    return list(source.snapshot().camera_problems)


async def raised_and_cleared(camera: Watched, kind: Kind) -> None:
    """The problem is raised (and listed on the source), then cleared (and no longer listed)."""
    await until(lambda: kind in problems(camera.source))
    assert camera.has(kind, cleared=False)
    await until(lambda: camera.has(kind, cleared=True))
    await until(lambda: kind not in problems(camera.source))


def check_event(event: pb.SourceEvent, snapshot: bytes | None, figure: str) -> None:
    assert event.source_id == "cam"
    assert event.id
    assert event.at.seconds > 0
    assert figure in event.detail
    assert snapshot is not None
    picture = cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    assert picture.shape == (H, W, 3)


# --- each problem, raised and cleared ---------------------------------------------------------


async def test_a_frozen_picture_is_raised_then_cleared(tmp_path: pathlib.Path) -> None:
    frames = script(tmp_path, (4, still(view())), (4, frozen(view())), (4, still(view())))
    async with watched(tmp_path, frames) as camera:
        await raised_and_cleared(camera, FROZEN)
        assert set(camera.kinds()) == {FROZEN}
        raised, snapshot = camera.events[0]
        assert not raised.cleared
        check_event(raised, snapshot, "% of the pixels changed")
        assert raised.detail.startswith("for ")
        cleared = next(e for e, _ in camera.events if e.cleared)
        assert cleared.detail.startswith("cleared after ")
        assert cleared.at.ToNanoseconds() > raised.at.ToNanoseconds()


async def test_loss_of_focus_is_raised_then_cleared(tmp_path: pathlib.Path) -> None:
    sharp = view()
    frames = script(tmp_path, (5, still(sharp)), (4, still(blurred(sharp))), (4, still(sharp)))
    async with watched(tmp_path, frames) as camera:
        await raised_and_cleared(camera, DEFOCUSED)
        assert set(camera.kinds()) == {DEFOCUSED}  # the edges are soft, not elsewhere
        raised, snapshot = camera.events[0]
        check_event(raised, snapshot, "of the camera's baseline")


async def test_a_moved_camera_is_raised_then_cleared(tmp_path: pathlib.Path) -> None:
    frames = script(
        tmp_path, (5, still(view())), (4, still(view(dx=70, dy=30))), (4, still(view()))
    )
    async with watched(tmp_path, frames) as camera:
        await raised_and_cleared(camera, MOVED)
        assert set(camera.kinds()) == {MOVED}
        raised, snapshot = camera.events[0]
        check_event(raised, snapshot, "like its reference view")
        # The picture's content went left and up, as it does when the camera turns right, down.
        assert "px left" in raised.detail
        assert "px up" in raised.detail


async def test_a_covered_camera_is_raised_then_cleared_on_the_api_and_metrics(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the real service: GetSource and ListSources list the problem while it lasts, the
    metrics show it, and the event is logged (what the service does with events on its own)."""
    caplog.set_level(logging.INFO, logger="detector_service.health_monitor")
    frames = script(tmp_path, (4, still(view())), (3, still(uniform(8))), (4, still(view())))
    server = await serve(health_settings(tmp_path))
    address = f"127.0.0.1:{server.port}"
    try:
        with RtspCamera(("cam",), width=W, height=H, fps=FPS, keyframe_s=1.0, frames=frames) as cam:
            async with grpc.aio.insecure_channel(address, options=LIVE_CHANNEL_OPTIONS) as channel:
                stub = pb_grpc.DetectorServiceStub(channel)
                spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=cam.url())
                await stub.AddSource(pb.AddSourceRequest(source=spec))

                async def listed() -> list[Kind]:
                    got = await stub.GetSource(pb.GetSourceRequest(source_id="cam"))
                    return list(got.source.camera_problems)

                async with asyncio.timeout(DEADLINE_S):
                    while await listed() != [COVERED]:  # noqa: ASYNC110 - polling the service
                        await asyncio.sleep(0.1)
                    everything = await stub.ListSources(pb.ListSourcesRequest())
                    # Read from the source's own state, which clears only after 1 s of picture.
                    cam_listed = next(s for s in everything.sources if s.spec.id == "cam")
                    assert list(cam_listed.camera_problems) == [COVERED]
                    metrics = generate_latest(server.metrics.registry).decode()
                    assert 'vigil_source_camera_problem{problem="covered",source="cam"} 1.0' in (
                        metrics
                    )
                    assert 'vigil_source_camera_problem{problem="moved",source="cam"} 0.0' in (
                        metrics
                    )
                    while await listed():  # noqa: ASYNC110 - polling the service
                        await asyncio.sleep(0.1)
    finally:
        await server.stop(0)
    logged = [r.getMessage() for r in caplog.records if r.name.endswith("health_monitor")]
    assert any(m.startswith("source cam: camera_covered (for ") for m in logged), logged
    assert any(m.startswith("source cam: camera_covered cleared (cleared after ") for m in logged)
    assert all(": camera_covered" in m for m in logged), logged


# --- normal life: nothing but the harm that proves the checks were running --------------------


async def test_night_mode_switches_raise_nothing(tmp_path: pathlib.Path) -> None:
    scene = view()
    frames = script(
        tmp_path,
        (4, still(scene)),
        (4, still(grey(scene, 0.45, 10))),  # infrared, darker
        (4, still(scene)),
        (4, still(grey(scene, 1.2, 40))),  # infrared, brighter (illuminators close by)
        (3, still(scene)),
        (3, still(uniform(8))),  # then covered: the checks were watching all along
        sigma=3.0,
    )
    async with watched(tmp_path, frames) as camera:
        await until(lambda: camera.has(COVERED, cleared=True))
        assert set(camera.kinds()) == {COVERED}, [e.detail for e, _ in camera.events]


@pytest.mark.parametrize("ptz", [True, False], ids=["ptz", "fixed"])
async def test_a_ptz_camera_moving_raises_nothing(tmp_path: pathlib.Path, ptz: bool) -> None:
    """The same scene for a fixed camera is a move: the control that proves the case."""
    frames = script(
        tmp_path,
        (4, still(view())),
        (1, lambda i: view(dx=7 * i, dy=3 * i)),  # panning to its next preset
        (5, still(view(dx=70, dy=30))),
        (3, still(uniform(8))),
    )
    async with watched(tmp_path, frames, ptz=ptz) as camera:
        await until(lambda: camera.has(COVERED, cleared=True))
        if ptz:
            assert set(camera.kinds()) == {COVERED}, [e.detail for e, _ in camera.events]
        else:
            assert MOVED in camera.kinds()


async def test_people_passing_raise_nothing(tmp_path: pathlib.Path) -> None:
    frames = script(tmp_path, (8, walker), (3, still(uniform(8))), (2, still(view())))
    async with watched(tmp_path, frames) as camera:
        await until(lambda: camera.has(COVERED, cleared=True))
        assert set(camera.kinds()) == {COVERED}, [e.detail for e, _ in camera.events]


def test_a_ptz_camera_can_be_declared_in_the_sources_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[[sources]]\nid = "dome"\nkind = "stream"\nuri = "rtsp://192.0.2.1/s"\nptz = true\n'
        '[[sources]]\nid = "gate"\nkind = "stream"\nuri = "rtsp://192.0.2.2/s"\n'
    )
    path.chmod(0o600)
    assert [(s.id, s.ptz) for s in load_sources_file(path)] == [("dome", True), ("gate", False)]
