"""Operators' feedback on the incidents panel, in Debian's Chromium at a desktop's and a phone's
size, against a real bridge and detector: Confirm / Dismiss on an incident (kept by the detector,
shown by a badge, a later review replacing the earlier one) and the false-alarm rate per camera,
class and rule, which follows each review and each new incident. The history starts as a service
that ran a while leaves it (one incident the model rejected, one a watch rule opened), written by
the detector's own store. Screenshots go to ``test-output/``."""

from __future__ import annotations

import pathlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from detector_service.incidents.store import IncidentStore
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.detector_service.incidents.helpers import det, frame_jpeg
from tests.detector_service.test_reviews import close_incident, open_incident
from tests.e2e.live import STEP_MS, Bridge, start_bridge
from tests.e2e.pages import collect_errors, context, no_sideways_scrolling, screenshot
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

pytestmark = pytest.mark.timeout(90)


def recent(n: int, source_id: str, class_name: str, rule_id: str = "") -> pb.Incident:
    """An incident that opened ``n`` minutes ago and closed a few seconds later."""
    opened_ns = time.time_ns() - n * 60 * 10**9
    incident = pb.Incident(
        id=f"seeded{n:026d}", source_id=source_id, class_name=class_name, rule_id=rule_id,
        peak_confidence=0.7, detections=[det(class_name)], snapshot_jpeg=frame_jpeg(n),
    )  # fmt: skip
    incident.opened_at.FromNanoseconds(opened_ns)
    incident.closed_at.FromNanoseconds(opened_ns + 5 * 10**9)
    return incident


REJECTED = recent(30, "gate", "knife")
REJECTED.verification_state = pb.VERIFICATION_STATE_DONE
REJECTED.verification.verdict = common_pb2.VERDICT_REJECTED
KNIFE = recent(20, "gate", "knife")
RULE = recent(10, "bay", "vehicle after hours", rule_id="bay-night")


@pytest.fixture
async def history_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    data_dir = tmp_path / "detector"
    store = IncidentStore(data_dir / "incidents.sqlite3")
    for incident in (REJECTED, KNIFE, RULE):
        store.save(incident)
    store.close()
    server = await serve_detector(DetectorSettings(port=0, backend="none", data_dir=data_dir))
    yield server
    await server.stop(0)


@pytest.fixture
async def review_bridges(history_detector: DetectorServer) -> AsyncIterator[list[Bridge]]:
    made: list[Bridge] = []
    yield made
    for bridge in made:
        await bridge.stop()


def row(page: Page, incident_id: str) -> Locator:
    return page.locator(f'[data-testid="incident-row"][data-incident="{incident_id}"]')


def rate(page: Page, camera: str, class_name: str) -> Locator:
    """The rate cell of a camera and class in the false-alarm table."""
    line = (
        page.get_by_test_id("false-alarm-row").filter(has_text=camera).filter(has_text=class_name)
    )
    return line.get_by_test_id("false-alarm-rate")


async def decisions(url: str) -> dict[str, tuple[str | None, bool]]:
    """What the detector keeps: each incident's review decision and false-alarm flag."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/api/incidents")
    answer.raise_for_status()
    return {
        i["id"]: ((i["review"] or {}).get("decision"), i["false_alarm"])
        for i in answer.json()["incidents"]
    }


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_confirm_and_dismiss_from_the_page_and_the_rate_follows(
    browser: Browser,
    history_detector: DetectorServer,
    review_bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(review_bridges, history_detector, tries=3, initial_s=1.0)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#incidents")
    await expect(page.get_by_test_id("feed-state")).to_have_attribute("data-state", "connected")
    await expect(page.get_by_test_id("incident-row")).to_have_count(3)

    # The model's rejection shows as a false alarm before anyone reviews.
    await expect(row(page, REJECTED.id).get_by_test_id("false-alarm-badge")).to_be_visible()
    await expect(row(page, KNIFE.id).get_by_test_id("false-alarm-badge")).to_have_count(0)
    await expect(page.get_by_test_id("false-alarm-row")).to_have_count(2)
    await expect(rate(page, "gate", "knife")).to_have_text("50%")
    rule_row = page.get_by_test_id("false-alarm-row").filter(has_text="bay-night")
    await expect(rule_row).to_contain_text("vehicle after hours")
    await expect(rate(page, "bay", "vehicle")).to_have_text("0%")

    # Dismiss the other knife: a false alarm too, the rate for the gate's knives goes to 100%.
    knife = row(page, KNIFE.id)
    await knife.get_by_role("button", name="Dismiss").click()
    await expect(knife.get_by_test_id("false-alarm-badge")).to_be_visible()
    await expect(knife.get_by_role("button", name="Dismiss")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(rate(page, "gate", "knife")).to_have_text("100%")

    # An operator's confirmation overrides the model's rejection.
    rejected = row(page, REJECTED.id)
    await rejected.get_by_role("button", name="Confirm").click()
    await expect(rejected.get_by_test_id("confirmed-badge")).to_be_visible()
    await expect(rejected.get_by_test_id("false-alarm-badge")).to_have_count(0)
    await expect(rate(page, "gate", "knife")).to_have_text("50%")
    # The list kept its order (newest first): a review does not move an incident.
    ids = [
        await r.get_attribute("data-incident")
        for r in await page.get_by_test_id("incident-row").all()
    ]
    assert ids == [RULE.id, KNIFE.id, REJECTED.id]

    # A new incident arrives through the live feed: listed unreviewed, counted in the table.
    start = time.time_ns()
    open_incident(history_detector, "gate", start)
    close_incident(history_detector, "gate", start)
    await expect(page.get_by_test_id("incident-row")).to_have_count(4, timeout=STEP_MS)
    await expect(rate(page, "gate", "knife")).to_have_text("33%")
    # A review from elsewhere (the API, the CLI) reaches the page through the live feed.
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{bridge.url}/api/incidents/{RULE.id}/review", json={"decision": "dismissed"}
        )
    assert answer.status_code == 200, answer.text
    await expect(row(page, RULE.id).get_by_test_id("false-alarm-badge")).to_be_visible()
    await expect(rate(page, "bay", "vehicle")).to_have_text("100%")

    # The new incident's toast closed, so that the screenshot shows the table.
    await page.get_by_test_id("incident-toast").get_by_role("button", name="Dismiss").click()
    await expect(page.get_by_test_id("incident-toast")).to_have_count(0)
    await page.get_by_test_id("false-alarms").scroll_into_view_if_needed()
    await no_sideways_scrolling(page)
    await screenshot(page, tmp_path, f"{size}-incident-reviews")

    # The detector kept every review: a reload shows them again.
    kept = await decisions(bridge.url)
    assert kept[KNIFE.id] == ("dismissed", True)
    assert kept[REJECTED.id] == ("confirmed", False)
    assert kept[RULE.id] == ("dismissed", True)
    await page.reload()
    await expect(row(page, KNIFE.id).get_by_test_id("false-alarm-badge")).to_be_visible()
    await expect(row(page, REJECTED.id).get_by_test_id("confirmed-badge")).to_be_visible()
    await expect(rate(page, "gate", "knife")).to_have_text("33%")
    assert not errors, errors
    await browser_context.close()
