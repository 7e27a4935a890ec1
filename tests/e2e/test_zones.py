"""Zones and lines drawn on the live view, in Debian's Chromium at a desktop's and a phone's size,
against a real bridge and detector (its test pattern): points placed where the picture is clicked,
an area, a line and a motion mask added with their settings, the camera's motion sensitivity and
"detect every frame" set, saved (PUT /api/sources/{id}) and given back by GET /api/sources with
the clicked places as normalised coordinates. Screenshots go to ``test-output/``."""

from __future__ import annotations

import pathlib

import pytest
from playwright.async_api import Browser, Page, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge
from tests.e2e.pages import collect_errors, context, screenshot, sources

pytestmark = pytest.mark.timeout(90)
AREA = [(0.2, 0.25), (0.6, 0.2), (0.65, 0.7), (0.25, 0.75)]
LINE = [(0.1, 0.9), (0.9, 0.85)]
MASK = [(0.75, 0.05), (0.95, 0.05), (0.95, 0.2), (0.75, 0.2)]
FRAME_SIZE = (
    "[document.getElementById('live-canvas').width, document.getElementById('live-canvas').height]"
)


async def watch(page: Page, url: str, source_id: str) -> None:
    await page.goto(url + "/")
    await page.get_by_test_id("source-select").select_option(source_id)
    await page.get_by_test_id("start-button").click()
    await page.wait_for_function(
        "Number(document.getElementById('frame-count').dataset.count) > 3", timeout=STEP_MS
    )


async def click_at(page: Page, x: float, y: float) -> None:
    """Click the picture at (x, y) of its width and height (it is letterboxed in the stage),
    brought to the middle of the screen first (clear of the sticky top bar)."""
    await page.evaluate("document.getElementById('stage').scrollIntoView({block: 'center'})")
    box = await page.get_by_test_id("live-canvas").bounding_box()
    assert box is not None
    width, height = await page.evaluate(FRAME_SIZE)
    scale = min(box["width"] / width, box["height"] / height)
    left = box["x"] + (box["width"] - width * scale) / 2
    top = box["y"] + (box["height"] - height * scale) / 2
    await page.mouse.click(left + x * width * scale, top + y * height * scale)


async def draw_zones(page: Page) -> None:
    await page.get_by_test_id("zones-edit").click()
    form = page.get_by_test_id("zone-form")
    await expect(form).to_be_visible()
    for x, y in AREA:
        await click_at(page, x, y)
    await expect(page.get_by_test_id("zone-points")).to_have_text("4 points placed")
    await form.get_by_label("Name").fill("Door area")
    await form.get_by_label("Classes (empty: all)").fill("person, car")
    await form.get_by_label("Loitering after (s, 0: off)").fill("5")
    await form.get_by_test_id("zone-add").click()
    await form.get_by_label("Shape").select_option("line")
    for x, y in LINE:
        await click_at(page, x, y)
    await form.get_by_label("Name").fill("Gate line")
    await form.get_by_label("Direction").select_option("in")
    await form.get_by_test_id("zone-add").click()
    await form.get_by_label("Shape").select_option("mask")
    await expect(form.get_by_label("Name")).to_be_hidden()
    await expect(page.get_by_test_id("zones-hint")).to_contain_text("not count as motion")
    for x, y in MASK:
        await click_at(page, x, y)
    await form.get_by_test_id("zone-add").click()
    await expect(page.get_by_test_id("mask-row")).to_have_count(1)
    await expect(page.get_by_test_id("mask-row")).to_contain_text("Motion mask 1")
    rows = page.get_by_test_id("zone-row")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_contain_text("Door area")
    await expect(rows.nth(0)).to_contain_text("loitering after 5 s")
    await expect(rows.nth(1)).to_contain_text("Gate line")
    await expect(rows.nth(1)).to_contain_text("counts in")
    overlay = page.get_by_test_id("zone-overlay")
    await expect(overlay.locator("polygon.zone.area")).to_have_count(1)
    await expect(overlay.locator("polyline.zone.line")).to_have_count(1)
    await expect(overlay.locator("polygon.zone.mask")).to_have_count(1)
    await page.get_by_test_id("motion-sensitivity").fill("0.7")
    await expect(page.locator("#motion-sensitivity-value")).to_have_text("0.70")
    await page.get_by_test_id("motion-every-frame").check()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_zones_are_drawn_on_the_live_view(
    browser: Browser,
    detector: DetectorServer,
    bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await watch(page, bridge.url, "default")
    await draw_zones(page)
    # A third shape in progress, to show how placing points looks.
    await page.get_by_test_id("zone-form").get_by_label("Shape").select_option("area")
    for x, y in [(0.7, 0.3), (0.9, 0.35)]:
        await click_at(page, x, y)
    # Drawn where clicked: the area's first corner is at 20% / 25% of the picture.
    corner = (
        await page.get_by_test_id("zone-overlay")
        .locator("polygon.zone.area")
        .get_attribute("points")
    )
    width, height = await page.evaluate(FRAME_SIZE)
    assert corner is not None
    x0, y0 = (float(v) for v in corner.split()[0].split(","))
    assert abs(x0 / width - AREA[0][0]) < 0.01, (corner, width)
    assert abs(y0 / height - AREA[0][1]) < 0.01, (corner, height)
    await expect(page.get_by_test_id("zones-save")).to_be_enabled()
    await page.evaluate("document.getElementById('stage').scrollIntoView({block: 'start'})")
    await screenshot(page, tmp_path, f"{size}-zones")
    settings = page.get_by_test_id("motion-settings")
    await settings.scroll_into_view_if_needed()
    await expect(settings).to_be_visible()
    await screenshot(page, tmp_path, f"{size}-zones-motion")
    assert not errors, errors
    await browser_context.close()


async def test_zones_saved_come_back_from_the_api(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge]
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await watch(page, bridge.url, "default")
    await draw_zones(page)
    await page.get_by_test_id("zones-save").click()
    saved = page.get_by_test_id("toast").filter(has_text="Zones saved for Test pattern")
    await expect(saved).to_be_visible(timeout=STEP_MS)
    hint = "Test pattern: 2 zones, 1 motion mask."
    await expect(page.get_by_test_id("zones-hint")).to_have_text(hint)
    (source,) = [s for s in await sources(bridge.url) if s["spec"]["id"] == "default"]
    zones = {zone["name"]: zone for zone in source["spec"]["zones"]}
    assert set(zones) == {"Door area", "Gate line"}
    area, line = zones["Door area"], zones["Gate line"]
    assert area["kind"] == "area"
    assert area["classes"] == ["person", "car"]
    assert area["loiter_s"] == 5
    assert line["kind"] == "line"
    assert line["direction"] == "in"
    for zone, clicked in ((area, AREA), (line, LINE)):
        assert len(zone["points"]) == len(clicked)
        for (x, y), (cx, cy) in zip(zone["points"], clicked, strict=True):
            assert abs(x - cx) < 0.01, (zone["points"], clicked)
            assert abs(y - cy) < 0.01, (zone["points"], clicked)
    motion = source["spec"]["motion"]
    assert (motion["sensitivity"], motion["detect_every_frame"]) == (0.7, True)
    (mask,) = motion["masks"]
    assert len(mask) == len(MASK)
    for (x, y), (cx, cy) in zip(mask, MASK, strict=True):
        assert abs(x - cx) < 0.01, (mask, MASK)
        assert abs(y - cy) < 0.01, (mask, MASK)
    # A reload shows them as saved.
    await watch(page, bridge.url, "default")
    await expect(page.get_by_test_id("zone-row")).to_have_count(2)
    await expect(page.get_by_test_id("mask-row")).to_have_count(1)
    await expect(page.get_by_test_id("motion-sensitivity")).to_have_value("0.7")
    await expect(page.get_by_test_id("motion-every-frame")).to_be_checked()
    assert not errors, errors
    await browser_context.close()
