"""The live view when the bridge goes away: Debian's Chromium, headless, against real services.

The detector (no model: frames of its test pattern) and the bridge run in this test's event loop
on 127.0.0.1; the bridge is stopped while the page shows live frames and started again on the same
port. The page's reconnect policy comes from the bridge's settings (``reconnect_tries``,
``reconnect_initial_s``), so each test picks a timing that makes its outcome certain rather than a
race: long waits when the bridge must be back before the tries run out, short ones when they must
run out. Every status text the page shows is recorded in the page as it changes, so the test
judges the sequence of states, not what a poll happened to catch.
"""

from __future__ import annotations

import pathlib

import pytest
from playwright.async_api import Browser, Page, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, frames, start_bridge, watch_live

pytestmark = pytest.mark.timeout(90)

# Installed in the page by the test (not part of the page): every text #connection-status shows,
# in order, with the dot's state at that moment.
RECORD_STATUS = """() => {
    window.seenStatus = [];
    const status = document.getElementById("connection-status");
    const dot = document.getElementById("connection-dot");
    const note = () => window.seenStatus.push(`${dot.dataset.state}: ${status.textContent}`);
    const options = { childList: true, characterData: true, subtree: true };
    new MutationObserver(note).observe(status, options);
}"""


async def seen(page: Page) -> list[str]:
    texts: list[str] = await page.evaluate("window.seenStatus")
    return texts


def since_the_drop(history: list[str]) -> list[str]:
    """The states shown from the first "connection lost" on."""
    drops = [n for n, text in enumerate(history) if "Connection lost" in text]
    assert drops, history
    return history[drops[0] :]


async def test_the_live_view_reconnects_when_the_bridge_comes_back(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge], tmp_path: pathlib.Path
) -> None:
    # 3 tries after 5, 10 and 20 s: a restart that takes anything under 35 s is caught by one.
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=5.0)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await watch_live(page, bridge.url, RECORD_STATUS)
    dot = page.get_by_test_id("connection-dot")
    status = page.get_by_test_id("connection-status")

    await bridge.stop()
    # The drop is shown at once: a pulsing dot, the first retry counted, a toast.
    await expect(dot).to_have_attribute("data-state", "connecting", timeout=STEP_MS)
    await expect(status).to_have_text("Connection lost; retry 1/3 in 5 s", timeout=STEP_MS)
    await expect(page.locator("#header-dot")).to_have_attribute("data-state", "connecting")
    interrupted = page.get_by_test_id("toast").filter(has_text="Live stream interrupted")
    await expect(interrupted).to_be_visible()
    await expect(interrupted).to_contain_text("up to 3 tries")
    await expect(page.get_by_test_id("start-button")).to_have_text("Stop")
    await expect(page.get_by_test_id("placeholder-waiting")).to_be_visible()
    await page.screenshot(path=tmp_path / "reconnecting.png")
    # While the bridge is down nothing claims the stream is live (a frame still decoding when the
    # connection closed once turned the dot green again and toasted "restored").
    outage = since_the_drop(await seen(page))
    assert not [text for text in outage if text.startswith("connected")], outage
    await expect(page.get_by_test_id("toast").filter(has_text="restored")).to_have_count(0)

    await bridge.start()
    # The next try finds it: green dot, frames flowing again, a toast that says so.
    before = await frames(page)
    await expect(dot).to_have_attribute("data-state", "connected", timeout=40_000)
    await page.wait_for_function(
        f"Number(document.getElementById('frame-count').dataset.count) > {before + 3}",
        timeout=STEP_MS,
    )
    await expect(status).to_have_text("Connected · live")
    await expect(
        page.get_by_test_id("toast").filter(has_text="Live stream restored")
    ).to_be_visible()
    await expect(page.get_by_test_id("toast").filter(has_text="Live stream lost")).to_have_count(0)
    history = await seen(page)
    assert "connecting: Connection lost; retry 1/3 in 5 s" in history, history
    assert history[-1] == "connected: Connected · live", history
    assert not any("retry 3/3" in text for text in history), history
    await page.screenshot(path=tmp_path / "recovered.png")


async def test_the_live_view_gives_up_after_its_tries(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge], tmp_path: pathlib.Path
) -> None:
    # The bridge stays down: 3 tries after 0.1, 0.2 and 0.4 s, then the page stops and says so.
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=0.1)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await watch_live(page, bridge.url, RECORD_STATUS)
    await bridge.stop()

    lost = page.get_by_test_id("toast").filter(has_text="Live stream lost")
    await expect(lost).to_be_visible(timeout=STEP_MS)
    await expect(lost).to_contain_text("The bridge cannot be reached.")
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
        "data-state", "disconnected"
    )
    await expect(page.locator("#header-status")).to_have_text("Live: off")
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "Disconnected: The bridge cannot be reached."
    )
    start = page.get_by_test_id("start-button")
    await expect(start).to_have_text("Start AI Detection")
    await expect(start).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#stage")).to_have_attribute("data-live", "false")
    await expect(page.get_by_text("to watch the camera")).to_be_visible()
    await page.screenshot(path=tmp_path / "gave-up.png")

    # Each of the 3 tries was counted, in order, each after the one before had failed.
    history = await seen(page)
    retries = [text for text in history if "retry" in text]
    assert retries == [
        "connecting: Connection lost; retry 1/3 in 0.1 s",
        "connecting: Reconnecting: retry 1/3…",
        "connecting: Connection lost; retry 2/3 in 0.2 s",
        "connecting: Reconnecting: retry 2/3…",
        "connecting: Connection lost; retry 3/3 in 0.4 s",
        "connecting: Reconnecting: retry 3/3…",
    ], history
    assert history[-1] == "disconnected: Disconnected: The bridge cannot be reached.", history
    outage = since_the_drop(history)
    assert not [text for text in outage if text.startswith("connected")], outage
    await expect(page.get_by_test_id("toast").filter(has_text="restored")).to_have_count(0)
    # No fourth try: nothing changes once the page has given up.
    count = len(history)
    await page.wait_for_timeout(1000)
    assert len(await seen(page)) == count, await seen(page)

    # Start again once the bridge is back: live as before.
    await bridge.start()
    await start.click()
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
        "data-state", "connected", timeout=STEP_MS
    )
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "Connected · live", timeout=STEP_MS
    )
