"""Retention: each source's days, then the disk cap, oldest first; held segments stay."""

from __future__ import annotations

import pathlib
import time

import numpy as np

from detector_service.recording import (
    FrameEncoder,
    RetentionPolicy,
    Segment,
    SegmentIndex,
    SegmentWriter,
    enforce,
)

FPS = 5
DAY = 86_400.0


def _record(index: SegmentIndex, root: pathlib.Path, source: str, start: float) -> list[Segment]:
    """12 s of a small encoded recording captured from ``start``: six 2-second segments."""
    writer = SegmentWriter(index, root, source, segment_s=2.0)
    rng = np.random.default_rng(len(source))
    # Noise, so every segment has a real size.
    frames = (
        (rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), start + n / FPS)
        for n in range(12 * FPS + 1)
    )
    with FrameEncoder(160, 120, FPS, keyframe_s=1.0) as encoder:
        writer.record(encoder.stream, encoder.packets(frames), pts_are_wall_clock=True)
    segments = index.all_segments(source)
    assert len(segments) == 6
    return segments


def test_days_then_the_cap_delete_the_oldest_and_spare_held_segments(
    tmp_path: pathlib.Path,
) -> None:
    index = SegmentIndex(tmp_path / "index.db")
    root = tmp_path / "segments"
    now = time.time()
    old = _record(index, root, "old", now - 3 * DAY)
    a = _record(index, root, "a", now - 600)
    b = _record(index, root, "b", now - 300)
    # An incident inside a's third segment, kept for 30 days; an expired one over b's first.
    index.hold("a", a[2].start + 0.5, a[2].start + 1.0, now + 30 * DAY, "incident 1")
    index.hold("b", b[0].start, b[0].end, now - 1, "incident 0")
    # The cap needs a's first, second and fourth segments gone (its third is held).
    need = a[0].bytes + a[1].bytes + a[3].bytes
    cap = sum(seg.bytes for seg in a + b) - need

    report = enforce(index, RetentionPolicy(default_days=7, days={"old": 2}, max_bytes=cap))

    deleted = {seg.path for seg in report.deleted}
    assert deleted == {seg.path for seg in [*old, a[0], a[1], a[3]]}
    # "old" went by its days, before the cap took the oldest of what was left.
    assert [seg.source for seg in report.deleted[:6]] == ["old"] * 6
    assert report.holds_dropped == 1
    assert report.over_cap == 0
    assert index.total_bytes() <= cap
    for seg in old + a + b:
        assert seg.path.exists() == (seg.path not in deleted)
    assert [seg.id for seg in index.all_segments("a")] == [a[2].id, a[4].id, a[5].id]
    # The day folder of the deleted source went with its last segment.
    assert not old[0].path.parent.exists()
    index.close()


def test_held_segments_outrank_the_cap(tmp_path: pathlib.Path) -> None:
    index = SegmentIndex(tmp_path / "index.db")
    now = time.time()
    a = _record(index, tmp_path / "segments", "a", now - 600)
    index.hold("a", a[1].start, a[2].end, now + DAY, "incident")

    report = enforce(index, RetentionPolicy(default_days=7, max_bytes=1))

    assert [seg.id for seg in index.all_segments("a")] == [a[1].id, a[2].id]
    assert report.over_cap == a[1].bytes + a[2].bytes - 1
    assert report.freed == sum(seg.bytes for seg in a) - a[1].bytes - a[2].bytes
    index.close()
