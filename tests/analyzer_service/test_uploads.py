"""Upload helpers: names shown to people and the limits a video must meet."""

from __future__ import annotations

import pytest

from analyzer_service import media, uploads
from analyzer_service.settings import AnalyzerSettings
from vigil.errors import InvalidInput


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.mp4", "evil.mp4"),
        ("a\x00b\x1b[31mc.mp4", "ab[31mc.mp4"),
        ("", "video"),
        ("/", "video"),
        ("x" * 300, "x" * 255),
    ],
)
def test_display_name_keeps_only_a_safe_base_name(raw: str, shown: str) -> None:
    assert uploads.display_name(raw) == shown


def probe(
    width: int = 1280, height: int = 720, fps: float = 30.0, duration_s: float = 60.0
) -> media.ProbeResult:
    return media.ProbeResult(
        duration_s=duration_s,
        fps=fps,
        width=width,
        height=height,
        frame_count=round(duration_s * fps),
        codec="h264",
    )


def test_limits_accept_portrait_and_landscape_4k() -> None:
    settings = AnalyzerSettings()
    uploads.check_limits(probe(3840, 2160), settings)
    uploads.check_limits(probe(2160, 3840), settings)


@pytest.mark.parametrize(
    ("video", "reason"),
    [
        (probe(4096, 2160), "size 4096x2160"),
        (probe(2200, 2200), "size 2200x2200"),
        (probe(fps=300.0), "300 fps"),
        (probe(duration_s=7201.0), "duration 7201 s"),
    ],
)
def test_limits_refuse_with_the_reason(video: media.ProbeResult, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        uploads.check_limits(video, AnalyzerSettings())
