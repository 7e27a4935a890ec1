"""The page at a phone's size and at a desktop's: Debian's Chromium, headless, real services.

A phone is 390x844 CSS pixels at device scale 3, with touch, as an iPhone 12-15 reports itself.
Screenshots go to the test's tmp folder and to ``test-output/`` at the repository root, to be looked
at; the test holds the page to what a person needs there: nothing wider than the screen (no
sideways scrolling), and the controls on screen, not cut off, not covering each other.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge, watch_live

pytestmark = pytest.mark.timeout(90)
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "test-output"
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=800)


async def screenshot(page: Page, tmp_path: pathlib.Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / path.name)


async def no_sideways_scrolling(page: Page, width: int) -> None:
    scroll_width: int = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width} px wide on a {width} px screen"
    # And nothing pokes out of the screen while the page itself clips it.
    wide: list[str] = await page.evaluate(
        """(width) => [...document.querySelectorAll("body *")]
            .filter((node) => node.getClientRects().length && !node.closest("[hidden], .toasts"))
            .filter((node) => {
                const box = node.getBoundingClientRect();
                return box.right > width + 0.5 || box.left < -0.5;
            })
            .filter((node) => !node.closest(".visually-hidden, .skip"))
            .map((node) => `${node.tagName.toLowerCase()}#${node.id}.${node.className}`)""",
        width,
    )
    assert not wide, f"outside the {width} px screen: {wide}"


async def on_screen(control: Locator, width: int) -> None:
    """Visible, wholly inside the screen's width, and big enough to tap: 44 px high, Apple's and
    WCAG's target size (the readout and the status are text, not targets)."""
    await expect(control).to_be_visible()
    box = await control.bounding_box()
    assert box is not None
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= width, box
    if await control.evaluate("(node) => node.matches('button, select, input')"):
        assert box["height"] >= 44, box


async def not_overlapping(first: Locator, second: Locator) -> None:
    a, b = await first.bounding_box(), await second.bounding_box()
    assert a is not None
    assert b is not None
    apart = (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )
    assert apart, (a, b)


async def test_the_page_on_a_phone(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge], tmp_path: pathlib.Path
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    await watch_live(page, bridge.url)
    width = PHONE["width"]

    # Live tab, frames showing.
    await screenshot(page, tmp_path, "phone-live")
    await no_sideways_scrolling(page, width)
    start = page.get_by_test_id("start-button")
    controls = [
        page.get_by_role("tab", name="Live"),
        page.get_by_role("tab", name="Analysis"),
        page.get_by_test_id("source-select"),
        page.locator("#sources-refresh"),
        start,
        page.get_by_test_id("connection-status"),
        page.get_by_test_id("stat-fps"),
        page.get_by_test_id("frame-count"),
    ]
    for control in controls:
        await on_screen(control, width)
    await not_overlapping(page.get_by_test_id("source-select"), page.locator("#sources-refresh"))
    await not_overlapping(start, page.get_by_test_id("connection-status"))
    canvas = await page.get_by_test_id("live-canvas").bounding_box()
    assert canvas is not None
    assert canvas["width"] >= width - 64, f"the video is {canvas['width']} px wide"
    assert canvas["x"] + canvas["width"] <= width, canvas
    # The start button is reachable without scrolling: a thumb's first screen.
    start_box = await start.bounding_box()
    assert start_box is not None
    assert start_box["y"] + start_box["height"] <= PHONE["height"], start_box

    # Tapping works (touch, not a mouse click): Stop, then the analysis tab.
    await start.tap()
    await expect(start).to_have_text("Start AI Detection")
    await page.get_by_role("tab", name="Analysis").tap()
    await expect(page.locator("#panel-analysis")).to_be_visible()
    await screenshot(page, tmp_path, "phone-analysis")
    await no_sideways_scrolling(page, width)
    for control in [
        page.get_by_label("Video file"),
        page.get_by_test_id("upload-button"),
        page.get_by_test_id("chat-input"),
        page.get_by_test_id("chat-send"),
    ]:
        await on_screen(control, width)
    await not_overlapping(page.get_by_test_id("chat-input"), page.get_by_test_id("chat-send"))
    await context.close()


async def test_the_page_on_a_desktop(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge], tmp_path: pathlib.Path
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    page = await browser.new_page(viewport=DESKTOP)
    await watch_live(page, bridge.url)
    await no_sideways_scrolling(page, DESKTOP["width"])
    # The whole live view fits one screen: toolbar and video, no scrolling.
    stage = await page.locator("#stage").bounding_box()
    assert stage is not None
    assert stage["y"] + stage["height"] <= DESKTOP["height"], stage
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "Connected · live", timeout=STEP_MS
    )
    await screenshot(page, tmp_path, "desktop-live")
    await page.get_by_role("tab", name="Analysis").click()
    await no_sideways_scrolling(page, DESKTOP["width"])
    await screenshot(page, tmp_path, "desktop-analysis")
