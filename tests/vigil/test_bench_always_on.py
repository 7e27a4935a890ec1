"""``vigil bench always-on``, small: three 720p cameras, one seeing motion, a few seconds each."""

from __future__ import annotations

import json
import pathlib

import pytest

from vigil.bench import REGISTRY, always_on
from vigil.bench.__main__ import main


def test_the_scene_marker_is_told_apart(tmp_path: pathlib.Path) -> None:
    still, moving = always_on.write_scenes(tmp_path)
    crossing = round(always_on.STILL_S * always_on.FPS) + 5
    assert not always_on.shows_marker(pathlib.Path(moving % 0).read_bytes())
    assert not always_on.shows_marker(pathlib.Path(still % 0).read_bytes())
    assert always_on.shows_marker(pathlib.Path(moving % crossing).read_bytes())


def test_onsets_and_rates_are_read_from_the_frames() -> None:
    fps = always_on.FPS
    # (capture s, arrival s, shows the object, detected): still, then the object from frame 3,
    # detected from frame 4 on; the first run (already in view when watching began) is no onset.
    frames = [(n / fps, n / fps + 0.05, n < 2 or n >= 3, n >= 4 or n < 2) for n in range(9)]
    rate, onsets = always_on.Watch(frames).figures()
    assert onsets == [pytest.approx(4 / fps + 0.05 - 3 / fps)]
    # 2 + 5 detected frames in (2 + 6) frames' time.
    assert rate == pytest.approx(7 / (8 / fps))


def test_always_on_reduced(capfd: pytest.CaptureFixture[str]) -> None:
    assert "always-on" in REGISTRY
    code = main(["always-on", "--sources", "3", "--moving", "1", "--duration", "4", "--json"])
    assert code == 0  # a goal missed is a figure, not a failed run
    result = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert result["name"] == "always-on"
    assert result["sources_live"] == 3
    # The still sources ran the model on a few frames only; the moving one saw its object.
    assert result["still_frames_skipped"] > 5 * result["still_frames_detected"]
    assert result["moving_detection_fps"][0] > 0
    assert result["rss_mb_per_source"] is not None
    assert result["gated_to_every_frame_ratio"] is not None
    if result["uncovered_s"] is None:
        assert result["recording"] == "recording: not available"
    else:
        assert set(result["uncovered_s"]) == {"s0", "s1", "m0"}
    for goal in ("goal_sources", "goal_ratio"):
        assert result[goal].startswith(("met: ", "missed: ")), result[goal]
