"""Analysing a range of a camera's recording from the page, in Debian's Chromium: a live camera
recorded by a real detector, a range dragged across its row of the timeline, "Analyze this
range", and the analysis view following the real analyzer (a scripted model, whose answers the
test knows) to its summary, then a chat answer. Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page, expect

from analyzer_service.server import AnalyzerServer
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from bridge.settings import BridgeSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests import recorded
from tests.e2e.live import Bridge
from tests.e2e.pages import collect_errors, context, screenshot
from tests.vigil.standin import ScriptedEngine
from vigil.bench.rtsp import RtspCamera

pytestmark = pytest.mark.timeout(180)
ANSWER = "A ball crosses the gate at [00:01]."
STEP_MS = 30_000


@pytest.fixture
def gate_camera() -> Iterator[RtspCamera]:
    with recorded.camera() as camera:
        yield camera


@pytest.fixture
async def recording_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    server = await serve_detector(
        DetectorSettings(
            port=0,
            backend="none",
            data_dir=tmp_path / "detector",
            recording_segment_s=recorded.SEGMENT_S,
        )
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def analyzer(
    tmp_path: pathlib.Path, recording_detector: DetectorServer
) -> AsyncIterator[AnalyzerServer]:
    settings = AnalyzerSettings(
        port=0,
        data_dir=tmp_path / "analyzer",
        detector_address=f"127.0.0.1:{recording_detector.port}",
        detection_pass=False,
    )
    server = await serve_analyzer(settings, engine=ScriptedEngine(ANSWER))
    yield server
    await server.stop(0)


@pytest.fixture
async def bridge(
    recording_detector: DetectorServer, analyzer: AnalyzerServer
) -> AsyncIterator[Bridge]:
    running = Bridge(
        BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{recording_detector.port}",
            analyzer_address=f"127.0.0.1:{analyzer.port}",
            retry_initial_s=0.1,
            retry_max_s=0.5,
        )
    )
    await running.start()
    yield running
    await running.stop()


async def drag_across(page: Page, source_id: str, start: float, end: float) -> None:
    """Press on the camera's track at ``start`` (a fraction of its width), move to ``end``."""
    track = page.locator(f'[data-testid="timeline-row"][data-source="{source_id}"] .track')
    box = await track.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * start, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y, steps=4)
    await page.mouse.move(box["x"] + box["width"] * end, y, steps=4)
    await page.mouse.up()


async def test_a_range_dragged_on_the_timeline_is_analysed_and_answered(
    browser: Browser,
    recording_detector: DetectorServer,
    bridge: Bridge,
    gate_camera: RtspCamera,
    tmp_path: pathlib.Path,
) -> None:
    detector = f"127.0.0.1:{recording_detector.port}"
    await asyncio.to_thread(recorded.record, detector, gate_camera.url())
    page = await (await context(browser, "desktop")).new_page()
    errors = collect_errors(page)
    await page.goto(f"{bridge.url}/#recordings")
    await page.get_by_test_id("timeline-window").select_option("10")
    gate = page.locator('[data-testid="timeline-row"][data-source="gate"]')
    await expect(gate.get_by_test_id("coverage-bar").first).to_be_visible(timeout=STEP_MS)

    # The form refuses a range that ends before it starts.
    await page.get_by_test_id("range-start").fill("2025-01-01T04:00:00")
    await page.get_by_test_id("range-end").fill("2025-01-01T02:00:00")
    await page.get_by_test_id("analyze-range").click()
    await expect(page.get_by_test_id("range-note")).to_have_text(
        "The range's end must be after its start."
    )
    await expect(page.locator("#panel-recordings")).to_be_visible()

    # A drag over the last half of the window picks that range of the gate camera (no playback).
    bands = page.get_by_test_id("range-selection")
    await expect(bands).to_have_count(2)  # the gate camera and the detector's test pattern
    await expect(bands.first).to_be_hidden()
    await expect(bands.last).to_be_hidden()
    await drag_across(page, "gate", 0.5, 0.999)
    await expect(gate.get_by_test_id("range-selection")).to_be_visible()
    await expect(bands.filter(visible=True)).to_have_count(1)
    await expect(page.get_by_test_id("range-source")).to_have_value("gate")
    await expect(page.get_by_test_id("range-note")).to_contain_text("gate: ")
    assert await page.get_by_test_id("range-start").input_value()
    assert await page.get_by_test_id("range-end").input_value()
    await expect(page.get_by_test_id("timeline-video")).to_be_hidden()
    await screenshot(page, tmp_path, "desktop-range-picked")

    await page.get_by_test_id("analyze-range").click()
    await expect(page.locator("#panel-analysis")).to_be_visible()
    progress = page.get_by_test_id("analysis-progress")
    await expect(progress).to_have_attribute("data-stage", "complete", timeout=STEP_MS)
    await expect(page.get_by_test_id("analysis-error")).to_be_hidden()
    subject = page.get_by_test_id("analysis-subject")
    await expect(subject).to_contain_text("(as recorded); times count from ")
    await expect(page.locator("#result-summary")).to_have_text(ANSWER)
    await expect(page.get_by_test_id("toast").filter(has_text="Recording fetched")).to_be_visible()

    await page.get_by_test_id("chat-input").fill("What happened at the gate?")
    await page.get_by_test_id("chat-send").click()
    answer = page.get_by_test_id("chat-answer")
    await expect(answer).to_have_attribute("data-state", "done", timeout=STEP_MS)
    await expect(answer).to_contain_text(ANSWER)
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, tmp_path, "desktop-recording-analysis")
    assert errors == []
