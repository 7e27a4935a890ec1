"""A camera problem on the page, in Debian's Chromium at a desktop's and a phone's size: a real
RTSP camera plays a scripted scene (a picture, then the lens covered), an always-on detector
checks its health, and the grid's tile gets a "Covered" badge while a toast with the snapshot says
so, through the page's live feed. Screenshots go to ``test-output/``."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest
from playwright.async_api import Browser, expect
from skimage import data

from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.e2e.live import Bridge, start_bridge
from tests.e2e.pages import add_source, collect_errors, context, no_sideways_scrolling, screenshot
from vigil.bench.rtsp import RtspCamera

pytestmark = pytest.mark.timeout(150)
W, H, FPS = 320, 240, 10
PROBLEM_MS = 60_000


def covered_scene(directory: pathlib.Path) -> str:
    """4 s of a picture with sensor noise, then 12 s of a covered lens (dark, flat), looped."""
    picture = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (W, H))
    dark = np.full((H, W, 3), 8, np.uint8)
    rng = np.random.default_rng(7)
    for n in range(16 * FPS):
        base = picture if n < 4 * FPS else dark
        noise = rng.standard_normal((H, W, 3), dtype=np.float32) * 3.0
        image = np.clip(base + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(directory / f"{n:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(directory / "%05d.jpg")


@pytest.fixture
async def health_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    settings = DetectorSettings(port=0, backend="none", data_dir=tmp_path / "detector")
    quick = {"health_checks_per_s": 4.0, "health_covered_after_s": 1.5, "max_fps": 5.0}
    server = await serve_detector(settings.model_copy(update=quick))
    yield server
    await server.stop(0)


@pytest.fixture
async def health_bridges(health_detector: DetectorServer) -> AsyncIterator[list[Bridge]]:
    made: list[Bridge] = []
    yield made
    for bridge in made:
        await bridge.stop()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_a_covered_camera_is_badged_and_toasted(
    browser: Browser,
    health_detector: DetectorServer,
    health_bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    frames = covered_scene(frames_dir)
    bridge = await start_bridge(health_bridges, health_detector, tries=3, initial_s=1.0)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    with RtspCamera(("porch",), width=W, height=H, fps=FPS, keyframe_s=1.0, frames=frames) as cam:
        await page.goto(bridge.url + "/#cameras")
        await expect(page.get_by_test_id("feed-state")).to_have_attribute("data-state", "connected")
        await add_source(
            bridge.url, id="porch", kind="stream", uri=cam.url(), display_name="Porch",
            mode="always",
        )  # fmt: skip
        toast = page.get_by_test_id("camera-toast").filter(has_text="Porch: Covered").first
        await expect(toast).to_be_visible(timeout=PROBLEM_MS)
        await expect(toast.locator("img.toast-image")).to_be_visible()
        tile = page.locator('[data-testid="camera-tile"][data-source="porch"]')
        await expect(tile.get_by_test_id("camera-problem")).to_have_text("Covered")
        await expect(tile).to_have_attribute("data-state", "live")
        await no_sideways_scrolling(page)
        await screenshot(page, tmp_path, f"{size}-grid-camera-problem")
    assert not errors, errors
    await browser_context.close()
