"""The live view's reconnect, as a person sees it in Chromium: the bridge stops while frames are
painted, the page shows the connection dot and the retry count and tells the user in a toast;
the bridge comes back on the same port and the page recovers by itself; a bridge that stays away
past the last try leaves the page disconnected with a toast saying the stream was lost. The
page's retry timing comes from the bridge's settings (``page_reconnect_*``), so the test waits
on what the page shows rather than racing its timers. And the page at a phone's size."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.e2e.support import OUTPUT, BridgeServer

pytestmark = pytest.mark.timeout(90)
STEP_MS = 15_000


@pytest.fixture
async def detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    server = await serve_detector(
        DetectorSettings(port=0, backend="none", data_dir=tmp_path / "detector")
    )
    try:
        yield server
    finally:
        await server.stop(0)


def bridge_for(detector: DetectorServer, attempts: int, first_ms: int) -> BridgeServer:
    return BridgeServer(
        BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{detector.port}",
            # Nothing listens here: the live view does not need the analyzer.
            analyzer_address="127.0.0.1:9",
            page_reconnect_attempts=attempts,
            page_reconnect_first_ms=first_ms,
        )
    )


async def frames(page: Page) -> int:
    count: int = await page.evaluate("Number(document.getElementById('frame-count').dataset.count)")
    return count


async def start_live(page: Page, url: str) -> None:
    await page.goto(url + "/")
    await expect(page.locator("#source-select option[value='default']")).to_have_count(
        1, timeout=STEP_MS
    )
    await page.get_by_test_id("start-button").click()
    await page.wait_for_function(
        "Number(document.getElementById('frame-count').dataset.count) > 3", timeout=STEP_MS
    )
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute("data-state", "connected")


def toast(page: Page, title: str) -> object:
    return page.get_by_test_id("toasts").get_by_text(title)


async def test_the_live_view_reconnects_when_the_bridge_comes_back(
    detector: DetectorServer, browser: Browser
) -> None:
    # Retries at 0.4, 0.8, 1.6, 3.2, 6.4 s: the page is still trying when the bridge returns.
    bridge = bridge_for(detector, attempts=5, first_ms=400)
    await bridge.start()
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await start_live(page, bridge.url)

        await bridge.stop()
        dot = page.get_by_test_id("connection-dot")
        status = page.get_by_test_id("connection-status")
        await expect(dot).to_have_attribute("data-state", "connecting", timeout=STEP_MS)
        await expect(page.get_by_test_id("toasts")).to_contain_text("Live stream interrupted")
        # Tries that failed while the bridge was away are counted for the user.
        await expect(status).to_contain_text("(2/5)", timeout=STEP_MS)
        await expect(page.locator("#stage")).to_have_attribute("data-live", "false")
        before = await frames(page)

        await bridge.start()
        await expect(dot).to_have_attribute("data-state", "connected", timeout=STEP_MS)
        await expect(page.get_by_test_id("toasts")).to_contain_text(
            "Live stream back", timeout=STEP_MS
        )
        await page.wait_for_function(
            f"Number(document.getElementById('frame-count').dataset.count) > {before + 3}",
            timeout=STEP_MS,
        )
        await expect(status).to_have_text("Connected · live")
        await expect(page.get_by_test_id("start-button")).to_have_text("Stop")
        assert not errors, errors
    finally:
        await page.close()
        await bridge.stop()


async def test_the_live_view_gives_up_after_its_last_try(
    detector: DetectorServer, browser: Browser
) -> None:
    bridge = bridge_for(detector, attempts=2, first_ms=200)
    await bridge.start()
    page = await browser.new_page()
    try:
        await start_live(page, bridge.url)
        await bridge.stop()
        await expect(page.get_by_test_id("toasts")).to_contain_text(
            "Live stream lost", timeout=STEP_MS
        )
        await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
            "data-state", "disconnected"
        )
        await expect(page.get_by_test_id("connection-status")).to_contain_text("Disconnected")
        await expect(page.get_by_test_id("start-button")).to_have_text("Start AI Detection")
        # Given up means given up: no further tries once the last one failed.
        await page.wait_for_timeout(1000)
        await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
            "data-state", "disconnected"
        )
    finally:
        await page.close()
        await bridge.stop()


async def within_width(page: Page, test_ids: tuple[str, ...], width: int = 390) -> None:
    for test_id in test_ids:
        box = await page.get_by_test_id(test_id).bounding_box()
        assert box is not None, f"{test_id} is not shown"
        assert box["x"] >= 0, f"{test_id} starts left of the screen: {box}"
        assert box["x"] + box["width"] <= width, f"{test_id} runs past the screen: {box}"


async def test_the_page_fits_a_phone(detector: DetectorServer, browser: Browser) -> None:
    bridge = bridge_for(detector, attempts=3, first_ms=1000)
    await bridge.start()
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    page = await context.new_page()
    try:
        await start_live(page, bridge.url)
        OUTPUT.mkdir(exist_ok=True)
        await page.screenshot(path=OUTPUT / "e2e-phone-live.png")
        await page.screenshot(path=OUTPUT / "e2e-phone-live-full.png", full_page=True)
        width: int = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px screen"
        await within_width(
            page, ("start-button", "source-select", "tab-live", "tab-analysis", "live-canvas")
        )
        # A finger-sized target for the main control (WCAG 2.5.8 asks for 24 px at least).
        start = await page.get_by_test_id("start-button").bounding_box()
        assert start is not None
        assert start["height"] >= 24

        await page.get_by_test_id("tab-analysis").tap()
        await expect(page.locator("#panel-analysis")).to_be_visible()
        await page.screenshot(path=OUTPUT / "e2e-phone-analysis.png", full_page=True)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the analysis tab is {width} px wide on a 390 px screen"
        await within_width(page, ("upload-button", "video-file", "chat-input", "chat-send"))
    finally:
        await context.close()
        await bridge.stop()
