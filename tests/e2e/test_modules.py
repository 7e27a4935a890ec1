"""The page's ES modules in Debian's Chromium, headless, against a real bridge and detector: the
entry module loads every module under ``bridge/static/js`` (none is left behind unimported, none
fails to load) and the page runs without a console error, through both views."""

from __future__ import annotations

import pathlib

import pytest
from playwright.async_api import Browser, ConsoleMessage, Request, Response, expect

from detector_service.server import DetectorServer
from tests.e2e.live import STEP_MS, Bridge, start_bridge, watch_live

pytestmark = pytest.mark.timeout(60)
STATIC = pathlib.Path(__file__).resolve().parents[2] / "bridge" / "static"
JS = STATIC / "js"


def modules() -> set[str]:
    """The URL path of every module the page is made of."""
    return {"/static/" + path.relative_to(STATIC).as_posix() for path in JS.rglob("*.js")}


async def test_the_page_loads_every_module_without_console_errors(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge]
) -> None:
    assert len(modules()) > 1, modules()
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=1.0)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    loaded: dict[str, str | None] = {}  # path -> content type of every script served

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} at {message.location}")

    def failed(request: Request) -> None:
        errors.append(f"request failed: {request.url} {request.failure}")

    def response(answer: Response) -> None:
        if answer.request.resource_type == "script":
            path = answer.url.removeprefix(bridge.url)
            loaded[path] = answer.headers.get("content-type") if answer.ok else f"{answer.status}"

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("requestfailed", failed)
    page.on("response", response)

    # Live: frames painted (watch_live also fails on an uncaught error in the page).
    await watch_live(page, bridge.url)
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "Connected · live", timeout=STEP_MS
    )
    # Both views work: the analysis tab opens and its controls are wired.
    await page.get_by_role("tab", name="Analysis").click()
    await expect(page.locator("#panel-analysis")).to_be_visible()
    await expect(page.get_by_test_id("chat-input")).to_be_disabled()
    await page.get_by_role("tab", name="Live").click()
    await page.get_by_test_id("start-button").click()
    await expect(page.get_by_test_id("connection-dot")).to_have_attribute(
        "data-state", "disconnected"
    )
    assert await page.evaluate("Boolean(window.vigil.live && window.vigil.analysis)")

    assert set(loaded) == modules(), (
        f"not loaded: {sorted(modules() - set(loaded))}; "
        f"not in bridge/static/js: {sorted(set(loaded) - modules())}"
    )
    # A module script is run only when served with a JavaScript MIME type.
    wrong = {path: kind for path, kind in loaded.items() if "javascript" not in (kind or "")}
    assert not wrong, wrong
    assert not errors, errors
    await page.close()
