"""The camera grid and camera management, in Debian's Chromium at a desktop's and a phone's size,
against a real bridge and detector (its test pattern, no model).

What a person sees: a tile per source with its state, a tile opening the full live stream, a
camera added through the dialog coming back with its password masked (and the typed password gone
from the page), removed with two presses, and its mode changed. Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import pathlib

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge
from tests.e2e.pages import (
    add_source,
    collect_errors,
    context,
    no_sideways_scrolling,
    screenshot,
    sources,
)

pytestmark = pytest.mark.timeout(90)
PASSWORD = "hunter2-secret"
ON_DEMAND = "on_demand"


def tile(page: Page, source_id: str) -> Locator:
    return page.locator(f'[data-testid="camera-tile"][data-source="{source_id}"]')


async def open_grid(page: Page, url: str) -> None:
    await page.goto(url + "/#cameras")
    await expect(page.locator("#panel-cameras")).to_be_visible()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_the_grid_has_a_tile_per_camera_that_opens_its_stream(
    browser: Browser,
    detector: DetectorServer,
    bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    await add_source(bridge.url, id="yard", kind="test_pattern", display_name="Yard", mode="always")
    await add_source(
        bridge.url, id="gate", kind="test_pattern", display_name="Gate", mode=ON_DEMAND
    )
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await open_grid(page, bridge.url)

    tiles = page.get_by_test_id("camera-tile")
    expected = {s["spec"]["id"] for s in await sources(bridge.url)}
    await expect(tiles).to_have_count(len(expected), timeout=STEP_MS)
    shown = {await tile.get_attribute("data-source") for tile in await tiles.all()}
    assert shown == expected
    # Each says its name and state; the always-on one is live without anyone watching.
    yard = tile(page, "yard")
    await expect(yard).to_contain_text("Yard")
    await expect(yard).to_have_attribute("data-state", "live", timeout=STEP_MS)
    await expect(yard.locator(".badge.state")).to_have_text("Live")
    gate = tile(page, "gate")
    await expect(gate).to_contain_text("On demand · open to watch")
    await no_sideways_scrolling(page)
    if size == "phone":
        # One column: every tile as wide as the first.
        boxes = [await tile.bounding_box() for tile in await tiles.all()]
        assert len({round(box["x"]) for box in boxes if box}) == 1, boxes
    await screenshot(page, tmp_path, f"{size}-grid")

    # A tile is a button that opens the full stream of its camera.
    await yard.get_by_role("button").click()
    await expect(page.locator("#panel-live")).to_be_visible()
    await expect(page.get_by_test_id("source-select")).to_have_value("yard")
    await page.wait_for_function(
        "Number(document.getElementById('frame-count').dataset.count) > 3", timeout=STEP_MS
    )
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute("data-state", "connected")
    assert not errors, errors
    await browser_context.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_a_camera_is_added_with_its_password_masked_and_removed(
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
    await open_grid(page, bridge.url)
    await page.get_by_test_id("cameras-open").click()
    dialog = page.get_by_test_id("cameras-dialog")
    await expect(dialog).to_be_visible()

    form = dialog.get_by_test_id("camera-form")
    await form.get_by_label("Name").fill("Front door")
    await expect(form.get_by_label("Id", exact=True)).to_have_value("front-door")
    await form.get_by_label("Kind").select_option("stream")
    await form.get_by_label("Mode").select_option("on_demand")
    await form.get_by_label("Address", exact=True).fill(
        f"rtsp://admin:{PASSWORD}@192.0.2.10/stream2"
    )
    await form.get_by_label("Recording address (optional)").fill(
        f"rtsp://admin:{PASSWORD}@192.0.2.10/stream1"
    )
    await form.get_by_test_id("camera-add").click()

    row = dialog.locator('[data-testid="camera-row"][data-source="front-door"]')
    await expect(row).to_be_visible(timeout=STEP_MS)
    # Said where the dialog is, masked.
    await expect(dialog.get_by_test_id("cameras-status")).to_have_text(
        "Added Front door: rtsp://admin:***@192.0.2.10/stream2"
    )
    await expect(row.get_by_test_id("camera-uri")).to_have_text(
        "rtsp://admin:***@192.0.2.10/stream2"
    )
    await expect(row.get_by_test_id("camera-record-uri")).to_have_text(
        "rtsp://admin:***@192.0.2.10/stream1"
    )
    # The typed password is gone from the page: not in its text, not in any field.
    html: str = await page.content()
    values: list[str] = await page.evaluate(
        "[...document.querySelectorAll('input')].map((i) => i.value)"
    )
    assert PASSWORD not in html
    assert not any(PASSWORD in v for v in values), values
    (added,) = [s for s in await sources(bridge.url) if s["spec"]["id"] == "front-door"]
    assert added["spec"]["display_name"] == "Front door"
    assert added["spec"]["mode"] == "on_demand"
    # And the grid has its tile.
    await expect(tile(page, "front-door")).to_have_count(1)
    await no_sideways_scrolling(page)
    await screenshot(page, tmp_path, f"{size}-cameras-dialog")

    # Removing asks once more, then the camera is gone, here and from the API.
    remove = row.get_by_test_id("camera-remove")
    await remove.click()
    await expect(remove).to_have_text("Confirm removal")
    await remove.click()
    await expect(row).to_have_count(0, timeout=STEP_MS)
    await expect(dialog.get_by_test_id("cameras-status")).to_have_text("Removed Front door")
    assert "front-door" not in {s["spec"]["id"] for s in await sources(bridge.url)}
    assert not errors, errors
    await browser_context.close()


async def test_the_mode_of_a_camera_is_changed(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge]
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    await add_source(
        bridge.url, id="gate", kind="test_pattern", display_name="Gate", mode=ON_DEMAND
    )
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await open_grid(page, bridge.url)
    await page.get_by_test_id("cameras-open").click()
    row = page.locator('[data-testid="camera-row"][data-source="gate"]')
    await row.get_by_label("Mode of Gate").select_option("always")
    await expect(tile(page, "gate")).to_have_attribute("data-state", "live", timeout=STEP_MS)
    (gate,) = [s for s in await sources(bridge.url) if s["spec"]["id"] == "gate"]
    assert gate["spec"]["mode"] == "always"
    assert not errors, errors
    await browser_context.close()
