"""End to end: Debian's Chromium, headless, drives the bridge's page against the real services.

The detector (no model: frames of its test pattern), the analyzer and the bridge run in this
test's event loop on free 127.0.0.1 ports; the browser is driven with Playwright's async API so
the loop keeps serving them meanwhile. Playwright's own browser downloads are never used: it
launches ``/usr/bin/chromium`` (``make browser`` installs it; see ``conftest.py``).

Runs twice: with no language model, and with the real one: the session's vLLM engine on a tiny
random Gemma 3 (``tests/llm.py``), passed to the analyzer (``serve(settings, engine=...)``), so an
analysis completes and a chat answer streams in from vLLM. Its words are random: the test holds
the page to the structure (streamed pieces, states), not to what it says.

Screenshots of both tabs go to ``test-output/`` at the repository root.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import uvicorn
from playwright.async_api import Browser, Page, ViewportSize, expect

from analyzer_service.engine import Engine
from analyzer_service.server import serve as serve_analyzer
from analyzer_service.settings import AnalyzerSettings
from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings

OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "test-output"
VIEWPORT = ViewportSize(width=1280, height=800)
# Seconds for each step that waits on the services.
STEP_S = 15.0
# The stage colours of the progress bar (app.css: --warn, --ok).
YELLOW = "rgb(234, 179, 8)"
GREEN = "rgb(34, 197, 94)"

pytestmark = pytest.mark.timeout(60)
# The model's summary: <eos> is ignored, so it takes all of these tokens, long enough (a second or
# more) for the page's inference state to be seen; a chat answer takes CHAT_TOKENS.
SUMMARY_TOKENS = 300
CHAT_TOKENS = 24


@dataclass
class Services:
    url: str
    engine: Engine | None


def write_video(path: pathlib.Path, seconds: float = 3.0, fps: int = 15) -> pathlib.Path:
    """A small mp4 (320x240, mp4v): a square moving over a dark scene, then a cut at half time to
    a bright one, which the analyzer's timeline reports as a scene change."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (320, 240))
    assert writer.isOpened()
    total = int(seconds * fps)
    for n in range(total):
        x = (n * 7) % 280
        if n < total // 2:
            frame = np.full((240, 320, 3), 20, np.uint8)
            cv2.rectangle(frame, (x, 100), (x + 40, 140), (0, 140, 255), -1)
        else:
            frame = np.full((240, 320, 3), (200, 170, 90), np.uint8)
            cv2.circle(frame, (300 - x, 120), 30, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(
    params=[
        "no-model",
        # Its setup may load the session's engine: minutes on a busy two-core host.
        pytest.param("model", marks=pytest.mark.timeout(900)),
    ]
)
def engine(request: pytest.FixtureRequest) -> Engine | None:
    if request.param == "model":
        engine: Engine = request.getfixturevalue("llm_engine")
        return engine
    return None


@pytest.fixture
async def services(tmp_path: pathlib.Path, engine: Engine | None) -> AsyncIterator[Services]:
    detector = await serve_detector(
        DetectorSettings(port=0, backend="none", data_dir=tmp_path / "detector")
    )
    analyzer = await serve_analyzer(
        AnalyzerSettings(
            port=0,
            data_dir=tmp_path / "analyzer",
            detector_address=f"127.0.0.1:{detector.port}",
            max_tokens=SUMMARY_TOKENS,
            chat_max_tokens=CHAT_TOKENS,
        ),
        engine=engine,
    )
    settings = BridgeSettings(
        port=0,
        detector_address=f"127.0.0.1:{detector.port}",
        analyzer_address=f"127.0.0.1:{analyzer.port}",
        retry_initial_s=0.1,
        retry_max_s=0.5,
    )
    sock = listen(settings)
    options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 2}
    server = uvicorn.Server(config(create_app(settings), settings, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
        yield Services(f"http://127.0.0.1:{sock.getsockname()[1]}", engine)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        await analyzer.stop(0)
        await detector.stop(0)


async def painted_pixels(page: Page) -> int:
    """How many of a grid of canvas samples are not black."""
    count: int = await page.evaluate(
        """() => {
            const canvas = document.getElementById("live-canvas");
            const context = canvas.getContext("2d");
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let lit = 0;
            for (let i = 0; i < data.length; i += 4 * 97) {
                if (data[i] + data[i + 1] + data[i + 2] > 30) lit += 1;
            }
            return lit;
        }"""
    )
    return count


async def test_page_end_to_end(
    services: Services, browser: Browser, tmp_path: pathlib.Path
) -> None:
    started = time.monotonic()
    OUTPUT.mkdir(exist_ok=True)
    variant = "model" if services.engine is not None else "no-model"
    # Reduced motion, as some people ask for: stage colours then change at once instead of over a
    # 0.3 s transition, which a tiny model's short inference stage can end midway.
    page = await browser.new_page(viewport=VIEWPORT, reduced_motion="reduce")
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        await drive(page, services, tmp_path, variant)
    except BaseException:
        # What the page showed when it went wrong.
        with contextlib.suppress(Exception):
            await page.screenshot(path=OUTPUT / f"e2e-failure-{variant}.png", full_page=True)
        raise
    assert not page_errors, page_errors
    await page.close()
    elapsed = time.monotonic() - started
    assert elapsed < 45, f"the browser run took {elapsed:.1f} s"


async def drive(page: Page, services: Services, tmp_path: pathlib.Path, variant: str) -> None:
    # -- Live tab: Start, frames painted, green dot -------------------------------------------
    await page.goto(services.url + "/")
    await expect(page.get_by_role("tab", name="Live")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#source-select option[value='default']")).to_have_count(
        1, timeout=STEP_S * 1000
    )
    start = page.get_by_test_id("start-button")
    await expect(start).to_have_text("Start AI Detection")
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
        "data-state", "disconnected"
    )
    await start.click()
    await expect(start).to_have_text("Stop")
    await page.wait_for_function(
        "Number(document.getElementById('frame-count').dataset.count) > 5",
        timeout=STEP_S * 1000,
    )
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute("data-state", "connected")
    assert await painted_pixels(page) > 50, "the canvas stayed blank"
    await expect(page.get_by_test_id("stat-latency")).to_have_text(re.compile(r"^\d+ ms$"))
    await page.wait_for_function(
        "parseFloat(document.getElementById('stat-fps').textContent) > 1", timeout=5000
    )
    await page.screenshot(path=OUTPUT / f"e2e-live-{variant}.png")

    # -- Analysis tab: upload, progress to the end, result ------------------------------------
    await page.get_by_role("tab", name="Analysis").click()
    await expect(page.locator("#panel-analysis")).to_be_visible()
    await expect(page.locator("#panel-live")).to_be_hidden()
    video = write_video(tmp_path / "clip.mp4")
    await page.get_by_label("Video file").set_input_files(video)
    await page.get_by_test_id("upload-button").click()
    await expect(page.get_by_test_id("upload-progress")).to_have_attribute(
        "aria-valuenow", "100", timeout=STEP_S * 1000
    )
    progress = page.get_by_test_id("analysis-progress")
    failure = page.get_by_test_id("analysis-error")
    fill = progress.locator(".fill")
    if services.engine is not None:
        # While the model reads the frames: a yellow bar and the thinking indicator.
        await expect(progress).to_have_attribute(
            "data-stage", "ai_inference", timeout=STEP_S * 1000
        )
        await expect(page.get_by_test_id("thinking")).to_be_visible()
        await expect(fill).to_have_css("background-color", YELLOW)
        await page.screenshot(path=OUTPUT / "e2e-analysis-inference.png")
    # Either the analysis completes (100%, stage "complete") or the job fails.
    await page.wait_for_function(
        """() => {
            const bar = document.getElementById("analysis-progress");
            return bar.dataset.stage === "complete" || bar.dataset.stage === "failed";
        }""",
        timeout=STEP_S * 1000,
    )
    if await progress.get_attribute("data-stage") == "complete":
        await expect(progress).to_have_attribute("aria-valuenow", "100")
        await expect(fill).to_have_css("background-color", GREEN)
        await expect(page.get_by_test_id("analysis-percent")).to_have_text("100%")
        await expect(page.get_by_test_id("result")).to_be_visible()
        # The cut half way through the clip is on the timeline, at its time as mm:ss.
        entries = page.get_by_test_id("timeline-entry")
        await expect(entries.first).to_be_visible()
        await expect(entries.locator("time").first).to_have_text(
            re.compile(r"^\d{2}:\d{2}(–\d{2}:\d{2})?$")
        )
        if services.engine is None:
            await expect(page.get_by_test_id("notes")).to_contain_text("No language model")
        await expect(page.get_by_test_id("thinking")).to_be_hidden()
        await expect(failure).to_be_hidden()
    else:
        # Only without a model, and only that reason, may an analysis end early.
        assert services.engine is None, await failure.text_content()
        await expect(failure).to_contain_text("MODEL_NOT_CONFIGURED")
        await expect(
            page.get_by_test_id("toast").filter(has_text="Analysis failed")
        ).to_be_visible()

    # -- Chat: a streamed answer, or the plain "no language model" refusal ----------------------
    chat_input = page.get_by_test_id("chat-input")
    await expect(chat_input).to_be_enabled()
    await chat_input.fill("What happens in the video?")
    await page.get_by_test_id("chat-send").click()
    await expect(page.get_by_test_id("chat-question")).to_have_text("What happens in the video?")
    answer = page.get_by_test_id("chat-answer")
    await page.wait_for_function(
        """() => {
            const bubble = document.querySelector("[data-testid=chat-answer]");
            return bubble && (bubble.dataset.state === "done" || bubble.dataset.state === "error");
        }""",
        timeout=STEP_S * 1000,
    )
    await expect(page.get_by_test_id("typing-indicator")).to_have_count(0)
    if services.engine is None:
        await expect(answer).to_have_attribute("data-state", "error")
        await expect(answer).to_contain_text("No language model is configured")
    elif await answer.get_attribute("data-state") == "done":
        chunks = int(await answer.get_attribute("data-chunks") or "0")
        assert chunks >= 2, f"the answer arrived in {chunks} piece(s), not streamed"
        assert (await answer.text_content() or "").strip(), "the answer is empty"
    else:
        raise AssertionError(f"the chat failed: {await answer.text_content()}")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=OUTPUT / f"e2e-analysis-{variant}.png", full_page=True)

    # Stop ends the stream: the dot turns red.
    await page.get_by_role("tab", name="Live").click()
    await start.click()
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
        "data-state", "disconnected"
    )
