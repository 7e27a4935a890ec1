"""The live view's "Full size" toggle in Chromium: shown for a camera with a main stream, it
switches the picture to that stream at full size (real RTSP cameras, a real bridge and detector)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge
from tests.e2e.pages import add_source, collect_errors, context
from vigil.bench.rtsp import RtspCamera

pytestmark = pytest.mark.timeout(90)

CANVAS_WIDTH = "document.getElementById('live-canvas').width"


async def test_full_size_shows_the_main_stream_of_a_camera_that_has_one(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge]
) -> None:
    with (
        RtspCamera(("sub",), width=320, height=240, fps=10, keyframe_s=1.0) as sub,
        RtspCamera(("main",), width=640, height=480, fps=10, keyframe_s=1.0) as main,
    ):
        bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
        await add_source(bridge.url, id="gate", kind="stream", uri=sub.url(), record_uri=main.url())
        browser_context = await context(browser, "desktop")
        page = await browser_context.new_page()
        errors = collect_errors(page)
        await page.goto(bridge.url + "/")
        toggle = page.get_by_test_id("full-size")
        # The default source (the test pattern) names no main stream: no toggle.
        await expect(page.get_by_test_id("source-select")).to_contain_text("gate")
        await expect(toggle).to_be_hidden()
        await page.get_by_test_id("source-select").select_option("gate")
        await expect(toggle).to_be_visible()
        await page.get_by_test_id("start-button").click()
        await page.wait_for_function(f"{CANVAS_WIDTH} === 320", timeout=STEP_MS)
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        await page.wait_for_function(f"{CANVAS_WIDTH} === 640", timeout=STEP_MS)
        await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
            "data-state", "connected"
        )
        # And back to the detection stream.
        await toggle.click()
        await page.wait_for_function(f"{CANVAS_WIDTH} === 320", timeout=STEP_MS)
        assert not errors, errors
        await browser_context.close()
