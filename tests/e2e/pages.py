"""Helpers of the multi-camera page's browser tests: screenshots at a desktop's and a phone's
size, sources added through the bridge's API, and a knife the test ONNX
model sees (a blue picture), for incidents."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
from typing import Any

import av
import cv2
import httpx
import numpy as np
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize

OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "test-output"
PHONE = ViewportSize(width=390, height=844)
DESKTOP = ViewportSize(width=1280, height=800)
SIZES = {"desktop": DESKTOP, "phone": PHONE}


async def context(browser: Browser, size: str) -> BrowserContext:
    """A browser context at a desktop's size or a phone's (390x844 at scale 3, touch)."""
    if size == "phone":
        return await browser.new_context(
            viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True,
            reduced_motion="reduce",
        )  # fmt: skip
    return await browser.new_context(viewport=DESKTOP, reduced_motion="reduce")


async def screenshot(page: Page, tmp_path: pathlib.Path, name: str) -> None:
    """The page as a person sees it (the window, not the whole scrolled page: toasts and dialogs
    sit on the window), in the test's folder and in ``test-output/`` to be looked at."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=path)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / path.name)


async def no_sideways_scrolling(page: Page) -> None:
    width: int = await page.evaluate("window.innerWidth")
    scroll_width: int = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width} px wide on a {width} px screen"


async def add_source(url: str, **spec: Any) -> dict[str, Any]:
    """Added through the bridge (async: the bridge serves in this test's event loop)."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{url}/api/sources", json=spec)
    assert answer.status_code == 201, answer.text
    source: dict[str, Any] = answer.json()
    return source


async def update_source(url: str, source_id: str, **changes: Any) -> dict[str, Any]:
    """PUT the source's spec as GET gives it, with ``changes``."""
    (spec,) = [s["spec"] for s in await sources(url) if s["spec"]["id"] == source_id]
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.put(f"{url}/api/sources/{source_id}", json={**spec, **changes})
    assert answer.status_code == 200, answer.text
    source: dict[str, Any] = answer.json()
    return source


async def first_incident(url: str, source_id: str, timeout_s: float) -> dict[str, Any]:
    """The source's first incident, from GET /api/incidents, once the detector has raised one."""
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(timeout_s):
        while True:
            answer = await client.get(f"{url}/api/incidents", params={"source_id": source_id})
            answer.raise_for_status()
            incidents: list[dict[str, Any]] = answer.json()["incidents"]
            if incidents:
                return incidents[-1]
            await asyncio.sleep(0.2)


async def recorded(url: str, source_id: str, timeout_s: float) -> None:
    """Until a segment of the source's recording is stored (coverage counts its bytes)."""
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(timeout_s):
        while True:
            answer = await client.get(f"{url}/api/sources/{source_id}/coverage")
            answer.raise_for_status()
            if answer.json()["bytes"] > 0:
                return
            await asyncio.sleep(0.5)


async def sources(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/api/sources")
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["sources"]
    return found


def knife_video(path: pathlib.Path, fps: int = 10) -> pathlib.Path:
    """Red, then blue (the test model's knife) for 1.5 s, then red: looped, a knife incident
    opens and closes every round (or once, with the detector's cooldown). H.264 with a keyframe a
    second, as cameras send, so that its recording plays in a browser."""
    w, h = 320, 240
    red, blue = (0, 0, 255), (255, 0, 0)
    script = [red] * fps + [blue] * (fps * 3 // 2) + [red] * (fps * 2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for index, bgr in enumerate(script):
            image = np.full((h, w, 3), bgr, np.uint8)
            cv2.putText(image, "door", (12, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def collect_errors(page: Page) -> list[str]:
    """Uncaught errors of the page, filled as they happen (a test asserts it stays empty)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors
