"""The incidents panel and the recordings timeline, in Debian's Chromium at a desktop's and a
phone's size, against a real bridge and a detector running the test ONNX model (it sees a knife in
a blue picture) on an always-on file source that nobody watches.

What a person sees: a toast with the snapshot when the detector raises an incident (through the
page's live feed, ``/ws/incidents``), the incident in the list (filtered by camera and class), its
recording asked for when it is opened, and on the timeline an incident marker (and, once the
bridge serves coverage, coverage bars). Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.test_onnx import build_model
from tests.e2e.live import Bridge, start_bridge
from tests.e2e.pages import (
    add_source,
    collect_errors,
    context,
    first_incident,
    knife_video,
    no_sideways_scrolling,
    recorded,
    screenshot,
    update_source,
)

pytestmark = pytest.mark.timeout(120)
# Waiting for the detector: a file source starts, the model sees the knife for a few frames.
INCIDENT_MS = 30_000
# An incident row's button that plays it (the row also has its Confirm and Dismiss buttons).
PLAY = re.compile(r"^Play ")


async def plays(page: Page, player: str, source_id: str) -> None:
    """The player (``incident`` or ``timeline``) plays a range of the source's recording, asked of
    the bridge."""
    video = page.get_by_test_id(f"{player}-video")
    path = f"/api/sources/{source_id}/recording.mp4"
    await expect(video).to_have_attribute("src", re.compile(re.escape(path) + r"\?"))
    parts = urlsplit(await video.get_attribute("src") or "")
    query = parse_qs(parts.query)
    assert query["start"][0] < query["end"][0], parts
    await page.wait_for_function(
        f"document.querySelector('[data-testid={player}-video]').readyState >= 2",
        timeout=INCIDENT_MS,
    )
    await expect(page.get_by_test_id(f"{player}-notice")).to_be_hidden()


@pytest.fixture
async def knife_detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    server = await serve_detector(
        DetectorSettings(
            port=0,
            backend="onnx",
            onnx_model_path=build_model(tmp_path / "tiny.onnx"),
            confidence=0.4,
            weapon_classes=["knife"],
            incident_min_frames=3,
            incident_window=5,
            incident_close_after_s=0.5,
            # Every frame detected: the motion gate takes the knife video's cut from red to blue
            # (the whole picture at once) for a change of light, and would see the knife about
            # once a second, too seldom to track it and open an incident.
            motion_detect_every_frame=True,
            data_dir=tmp_path / "detector",
        )
    )
    yield server
    await server.stop(0)


@pytest.fixture
async def knife_bridges(knife_detector: DetectorServer) -> AsyncIterator[list[Bridge]]:
    made: list[Bridge] = []
    yield made
    for bridge in made:
        await bridge.stop()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_a_new_incident_toasts_with_its_snapshot_and_is_listed(
    browser: Browser,
    knife_detector: DetectorServer,
    knife_bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(knife_bridges, knife_detector, tries=3, initial_s=1.0)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#incidents")
    await expect(page.get_by_test_id("feed-state")).to_have_attribute("data-state", "connected")
    await expect(page.get_by_test_id("incident-row")).to_have_count(0)

    # The camera is added once the page listens: the incident is news, not history.
    video = knife_video(tmp_path / "door.mp4")
    await add_source(
        bridge.url, id="door", kind="file", uri=str(video), loop=True, mode="always",
        display_name="Door", max_fps=10,
    )  # fmt: skip
    toast = page.get_by_test_id("incident-toast").first
    await expect(toast).to_be_visible(timeout=INCIDENT_MS)
    await expect(toast).to_contain_text("Knife on Door")
    snapshot = toast.locator("img.toast-image")
    await expect(snapshot).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    await page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=await snapshot.element_handle()
    )
    row = page.get_by_test_id("incident-row").first
    await expect(row).to_contain_text("Knife")
    await expect(row).to_contain_text("Door")
    await no_sideways_scrolling(page)
    await screenshot(page, tmp_path, f"{size}-incidents-toast")

    # The filters: another class hides it, its own shows it.
    await page.get_by_test_id("incident-class").select_option("knife")
    await expect(page.get_by_test_id("incident-row").first).to_be_visible()
    await page.get_by_test_id("incident-source").select_option("door")
    await expect(page.get_by_test_id("incident-row").first).to_contain_text("Door")

    # "View" opens it in the player; once its recording is stored, it plays from there.
    await toast.get_by_role("button", name="View").click()
    await expect(page.get_by_test_id("incident-caption")).to_contain_text("Knife on Door")
    await recorded(bridge.url, "door", INCIDENT_MS / 1000)
    await page.get_by_test_id("incident-row").first.get_by_role("button", name=PLAY).click()
    await plays(page, "incident", "door")
    assert not errors, errors
    await browser_context.close()


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_the_timeline_shows_each_camera_with_its_incidents(
    browser: Browser,
    knife_detector: DetectorServer,
    knife_bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(knife_bridges, knife_detector, tries=3, initial_s=1.0)
    video = knife_video(tmp_path / "door.mp4")
    await add_source(
        bridge.url, id="door", kind="file", uri=str(video), loop=True, mode="always",
        display_name="Door", max_fps=10,
    )  # fmt: skip
    await first_incident(bridge.url, "door", INCIDENT_MS / 1000)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#recordings")
    rows = page.get_by_test_id("timeline-row")
    await expect(rows).to_have_count(2)  # the default test pattern and the door
    door = page.locator('[data-testid="timeline-row"][data-source="door"]')
    await expect(door.get_by_test_id("marker-incident").first).to_be_visible()
    await no_sideways_scrolling(page)
    await screenshot(page, tmp_path, f"{size}-timeline")

    # A marker plays its moment: a window of the recording around it.
    await recorded(bridge.url, "door", INCIDENT_MS / 1000)
    await door.get_by_test_id("marker-incident").first.click()
    await plays(page, "timeline", "door")
    assert not errors, errors
    await browser_context.close()


async def test_the_timeline_shows_coverage_of_a_recorded_camera(
    browser: Browser,
    knife_detector: DetectorServer,
    knife_bridges: list[Bridge],
    tmp_path: pathlib.Path,
) -> None:
    bridge = await start_bridge(knife_bridges, knife_detector, tries=3, initial_s=1.0)
    await add_source(bridge.url, id="yard", kind="test_pattern", display_name="Yard", mode="always")
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#recordings")
    await page.get_by_test_id("timeline-window").select_option("10")
    yard = page.locator('[data-testid="timeline-row"][data-source="yard"]')
    # Recording starts with the source; its first segment is stored after some seconds.
    await recorded(bridge.url, "yard", INCIDENT_MS / 1000)
    await page.get_by_role("tab", name="Live").click()
    await page.get_by_role("tab", name="Recordings").click()
    bar = yard.get_by_test_id("coverage-bar").first
    await expect(bar).to_be_visible()
    await screenshot(page, tmp_path, "desktop-timeline-coverage")

    # A click on the bar plays the recording from there: the video loads and can play.
    await bar.click()
    await plays(page, "timeline", "yard")
    await screenshot(page, tmp_path, "desktop-timeline-playing")
    assert not errors, errors
    await browser_context.close()


async def test_the_timeline_marks_zone_events(
    browser: Browser,
    knife_detector: DetectorServer,
    knife_bridges: list[Bridge],
    tmp_path: pathlib.Path,
) -> None:
    """The test model sees a person in the red frames: with an area over the whole picture, the
    person coming and going raises zone events, marked on the camera's row."""
    bridge = await start_bridge(knife_bridges, knife_detector, tries=3, initial_s=1.0)
    video = knife_video(tmp_path / "door.mp4")
    everywhere = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    await add_source(
        bridge.url, id="door", kind="file", uri=str(video), loop=True, mode="always",
        display_name="Door", max_fps=10,
    )  # fmt: skip
    hall = {"name": "Hall", "kind": "area", "points": everywhere, "classes": ["person"]}
    await update_source(bridge.url, "door", zones=[hall])
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#recordings")
    door = page.locator('[data-testid="timeline-row"][data-source="door"]')
    markers = door.get_by_test_id("marker-event")
    for _ in range(30):
        if await markers.count():
            break
        await page.wait_for_timeout(1000)
        await page.get_by_role("tab", name="Live").click()
        await page.get_by_role("tab", name="Recordings").click()
    await expect(markers.first).to_be_visible()
    label = await markers.first.get_attribute("aria-label") or ""
    assert "Hall" in label, label
    await screenshot(page, tmp_path, "desktop-timeline-events")
    assert not errors, errors
    await browser_context.close()


async def test_the_live_feed_comes_back_after_the_bridge_restarts(
    browser: Browser, detector: DetectorServer, bridges: list[Bridge]
) -> None:
    bridge = await start_bridge(bridges, detector, tries=3, initial_s=0.2)
    browser_context = await context(browser, "desktop")
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#incidents")
    state = page.get_by_test_id("feed-state")
    await expect(state).to_have_attribute("data-state", "connected")
    await bridge.stop()
    await expect(state).to_have_attribute("data-state", "reconnecting")
    await expect(state).to_have_text("Live feed lost · reconnecting…")
    await bridge.start()
    # Tried again with backoff (0.2 s, 0.4 s, ...): back on its own, no reload.
    await expect(state).to_have_attribute("data-state", "connected", timeout=15_000)
    assert not errors, errors
    await browser_context.close()


# On the overlay of the incident's player: whether the knife's box (130,180)-(170,220) of the
# 320x240 picture is drawn, as the picture is fitted into the element (object-fit: contain); a
# pixel of the weapon's red on its left edge halfway down, and none inside it. Once it is, the
# video is paused, so the screenshot shows the box.
KNIFE_BOX_DRAWN = """() => {
  const video = document.querySelector("[data-testid=incident-video]");
  const canvas = document.querySelector("[data-testid=incident-boxes]");
  if (canvas.hidden || !canvas.width || !video.videoWidth) return false;
  const fit = Math.min(canvas.width / video.videoWidth, canvas.height / video.videoHeight);
  const left = (canvas.width - video.videoWidth * fit) / 2;
  const top = (canvas.height - video.videoHeight * fit) / 2;
  const context = canvas.getContext("2d");
  const at = (x, y, r) => context.getImageData(
    Math.round(left + x * fit) - r, Math.round(top + y * fit) - r, 2 * r + 1, 2 * r + 1).data;
  const edge = at(130, 200, 3);
  let red = false;
  for (let i = 0; i < edge.length; i += 4) {
    if (edge[i + 3] > 200 && edge[i] > 200 && edge[i + 1] < 100) red = true;
  }
  if (!red || at(150, 205, 0)[3] !== 0) return false;
  video.pause();
  return true;
}"""


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_an_incidents_playback_draws_the_detected_boxes_over_the_video(
    browser: Browser,
    knife_detector: DetectorServer,
    knife_bridges: list[Bridge],
    tmp_path: pathlib.Path,
    size: str,
) -> None:
    bridge = await start_bridge(knife_bridges, knife_detector, tries=3, initial_s=1.0)
    video = knife_video(tmp_path / "door.mp4")
    await add_source(
        bridge.url, id="door", kind="file", uri=str(video), loop=True, mode="always",
        display_name="Door", max_fps=10,
    )  # fmt: skip
    await first_incident(bridge.url, "door", INCIDENT_MS / 1000)
    await recorded(bridge.url, "door", INCIDENT_MS / 1000)
    browser_context = await context(browser, size)
    page = await browser_context.new_page()
    errors = collect_errors(page)
    await page.goto(bridge.url + "/#incidents")
    await page.get_by_test_id("incident-row").first.get_by_role("button", name=PLAY).click()
    await plays(page, "incident", "door")
    boxes = page.get_by_test_id("incident-boxes")
    await expect(boxes).to_be_visible()
    # The overlay lies exactly over the video.
    assert await boxes.bounding_box() == await page.get_by_test_id("incident-video").bounding_box()
    # The recording shows the knife for 1.5 s of every 4.5 s: its box is drawn while it does.
    # Headless Chromium refuses to play with sound once the click's activation is spent on
    # the requests before it: muted, it plays as a person's click makes it play.
    player = page.get_by_test_id("incident-video")
    await player.evaluate("v => { v.muted = true; return v.play(); }")
    await page.wait_for_function(KNIFE_BOX_DRAWN, timeout=INCIDENT_MS)
    await page.locator("#incident-player").scroll_into_view_if_needed()
    await screenshot(page, tmp_path, f"{size}-incident-boxes")
    assert not errors, errors
    await browser_context.close()
