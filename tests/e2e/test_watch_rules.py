"""The camera's watch rules on the live view, in Debian's Chromium against a real bridge and
detector: rules set through the API listed with their status, one added with the form and one
removed, each change given back by GET /api/sources. Screenshots go to ``test-output/``."""

from __future__ import annotations

import pathlib

import pytest
from playwright.async_api import Browser, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge
from tests.e2e.pages import collect_errors, context, screenshot, sources, update_source

pytestmark = pytest.mark.timeout(90)
LYING = {
    "id": "lying", "condition": "a person lying on the floor", "classes": ["person"],
    "zones": [], "min_dwell_s": 5.0, "motion": False, "check_interval_s": 0.0,
    "budget_per_hour": 0, "incident_kind": "", "active_start": "", "active_end": "",
    "disabled": False,
}  # fmt: skip


async def test_watch_rules_are_listed_added_and_removed(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge], tmp_path: pathlib.Path
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    await update_source(bridge.url, "default", watch_rules=[LYING], time_zone="Europe/Berlin")
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/")
    card = page.get_by_test_id("rules-card")
    await expect(card).to_be_hidden()
    await page.get_by_test_id("source-select").select_option("default")
    rows = page.get_by_test_id("rule-row")
    await expect(rows).to_have_count(1, timeout=STEP_MS)
    await expect(rows.nth(0)).to_contain_text("a person lying on the floor")
    await expect(rows.nth(0)).to_contain_text("person · dwell 5 s")
    await expect(rows.nth(0).get_by_test_id("rule-status")).to_have_text("0 checks, 0 yes")
    await expect(page.get_by_test_id("rules-hint")).to_have_text("Times in Europe/Berlin.")

    form = page.get_by_test_id("rule-form")
    await form.get_by_label("Id").fill("fence")
    await form.get_by_label("Situation").fill("someone climbs the fence")
    await form.get_by_label("Active (empty: always)").fill("22:00-06:00")
    await form.get_by_label("Needs motion").check()
    await form.get_by_test_id("rule-add").click()
    await expect(rows).to_have_count(2, timeout=STEP_MS)
    await expect(rows.nth(1)).to_contain_text("any class · motion · 22:00–06:00")
    (source,) = await sources(bridge.url)
    fence = source["spec"]["watch_rules"][1]
    assert (fence["id"], fence["motion"], fence["active_start"], fence["active_end"]) == (
        "fence", True, "22:00", "06:00",
    )  # fmt: skip
    await card.scroll_into_view_if_needed()
    await screenshot(page, tmp_path, "desktop-watch-rules")

    # The detector's refusal comes back as a toast, and nothing changes.
    await form.get_by_label("Id").fill("gate")
    await form.get_by_label("Situation").fill("a car at the gate")
    await form.get_by_label("Zones (empty: anywhere)").fill("moon")
    await form.get_by_test_id("rule-add").click()
    refused = page.get_by_test_id("toast").filter(has_text="Could not save the watch rules")
    await expect(refused).to_contain_text("names 'moon', which is not an area", timeout=STEP_MS)
    await rows.nth(0).get_by_role("button", name="Remove rule lying").click()
    await expect(rows).to_have_count(1, timeout=STEP_MS)
    await expect(rows.nth(0)).to_contain_text("someone climbs the fence")
    (source,) = await sources(bridge.url)
    assert [r["id"] for r in source["spec"]["watch_rules"]] == ["fence"]
    assert not errors, errors
    await browser_context.close()
