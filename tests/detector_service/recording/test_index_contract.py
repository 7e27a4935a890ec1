"""The recordings-index contract, run against both indexes: SQLite in a file and PostgreSQL (a
real server, one fresh database per test). Each test opens the index twice, as a restart or a
second replica would, and what one opening wrote the other reads: segments and their writers,
runs, coverage, holds, retention and detections. With real segment files: what a writer that died
left open is finished by the next owner, an export joins two writers' segments, and retention
deletes another writer's files with their rows."""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Iterator

import av
import numpy as np
import pytest

from detector_service.recording import (
    FrameEncoder,
    Interval,
    RecordingIndex,
    RetentionPolicy,
    Segment,
    SegmentIndex,
    SegmentWriter,
    enforce,
    export_range,
)
from detector_service.recording.postgres_index import PostgresSegmentIndex

FPS = 5
DAY = 86_400.0


class Indexes:
    """Opens the index on one database (or file) under one recordings root; closes them all."""

    def __init__(self, root: pathlib.Path, make: Callable[[], RecordingIndex]) -> None:
        self.root = root
        self._make = make
        self._open: list[RecordingIndex] = []

    def open(self) -> RecordingIndex:
        index = self._make()
        self._open.append(index)
        return index

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()


@pytest.fixture(params=["sqlite", "postgres"])
def indexes(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Indexes]:
    root = tmp_path / "recordings"
    root.mkdir()
    make: Callable[[], RecordingIndex]
    if request.param == "sqlite":

        def make() -> RecordingIndex:
            return SegmentIndex(root / "index.sqlite3")

    else:
        url: str = request.getfixturevalue("postgres_url")

        def make() -> RecordingIndex:
            return PostgresSegmentIndex(url, root, pool_size=2)

    opened = Indexes(root, make)
    yield opened
    opened.close_all()


def row(
    root: pathlib.Path,
    source: str,
    start: float,
    end: float,
    *,
    run: int = 1,
    params: str = "p1",
    writer: str = "",
) -> Segment:
    path = root / source / f"{round(start * 1000)}.mp4"
    return Segment(source, run, start, end, path, 100, "h264", 160, 120, params, writer=writer)


def add(index: RecordingIndex, seg: Segment) -> Segment:
    begun = index.begin(seg)
    index.finish(begun)
    return begun


def test_segments_are_indexed_as_they_open_and_join_the_recording_as_they_close(
    indexes: Indexes,
) -> None:
    a, b = indexes.open(), indexes.open()
    first = add(a, row(indexes.root, "cam", 100.0, 110.0, writer="a"))
    opened = a.begin(row(indexes.root, "cam", 110.0, 110.0, writer="a"))
    assert first.id
    assert opened.id
    assert first.id != opened.id
    # The other opening sees both: the closed one recorded, the open one unfinished.
    assert b.segments("cam", 0, 1000) == [first]
    assert b.unfinished("cam") == [opened]
    assert b.all_segments("cam")[0].path == indexes.root / "cam" / "100000.mp4"
    assert b.all_segments("cam")[0].writer == "a"
    done = dataclasses.replace(opened, end=120.0, bytes=250)
    b.finish(done)
    assert a.unfinished("cam") == []
    assert a.all_segments("cam") == [first, done]
    # Overlapping [start, end) only.
    assert a.segments("cam", 110.0, 115.0) == [done]
    assert a.segments("cam", 120.0, 130.0) == []
    assert a.source_bytes("cam") == 350
    assert a.total_bytes() == 350
    assert a.has_source("cam")
    assert not a.has_source("other")
    add(b, row(indexes.root, "door", 100.0, 101.0))
    assert a.sources() == ["cam", "door"]


def test_a_connection_continues_the_last_run_while_its_parameters_are_unchanged(
    indexes: Indexes,
) -> None:
    a, b = indexes.open(), indexes.open()
    assert a.run_for("cam", "p1") == 1
    add(a, row(indexes.root, "cam", 100.0, 110.0, run=1, params="p1"))
    assert b.run_for("cam", "p1") == 1
    assert b.run_for("cam", "p2") == 2
    add(b, row(indexes.root, "cam", 110.0, 120.0, run=2, params="p2"))
    assert a.run_for("cam", "p2") == 2
    assert a.run_for("cam", "p1") == 3


def test_coverage_joins_touching_segments_and_names_the_gaps(indexes: Indexes) -> None:
    a, b = indexes.open(), indexes.open()
    add(a, row(indexes.root, "cam", 100.0, 110.0, writer="a"))
    add(b, row(indexes.root, "cam", 110.01, 120.0, writer="b"))
    add(b, row(indexes.root, "cam", 130.0, 140.0, writer="b"))
    coverage = a.coverage("cam", 90.0, 135.0)
    assert coverage.covered == [Interval(100.0, 120.0), Interval(130.0, 135.0)]
    assert coverage.gaps == [Interval(90.0, 100.0), Interval(120.0, 130.0)]


def test_live_holds_keep_segments_from_retention_and_expire(indexes: Indexes) -> None:
    a, b = indexes.open(), indexes.open()
    old = add(a, row(indexes.root, "cam", 100.0, 110.0))
    held = add(a, row(indexes.root, "cam", 110.0, 120.0))
    newer = add(a, row(indexes.root, "door", 105.0, 115.0))
    b.hold("cam", 112.0, 113.0, keep_until=1000.0, reason="incident 1")
    b.hold("cam", 100.0, 101.0, keep_until=400.0, reason="incident 0")
    assert a.expired_unheld("cam", before=200.0, now=300.0) == []
    assert a.oldest_unheld(now=300.0, limit=10) == [newer]
    assert a.drop_holds(now=500.0) == 1
    assert a.expired_unheld("cam", before=200.0, now=500.0) == [old]
    assert a.oldest_unheld(now=500.0, limit=1) == [old]
    assert a.oldest_unheld(now=2000.0, limit=10) == [old, newer, held]


def test_a_removed_segment_takes_the_detections_of_its_time_and_the_gap_before(
    indexes: Indexes,
) -> None:
    a, b = indexes.open(), indexes.open()
    add(a, row(indexes.root, "cam", 100.0, 110.0))
    second = add(a, row(indexes.root, "cam", 120.0, 130.0))
    rows = [("cam", at, f"frame {at}".encode()) for at in (105.0, 115.0, 125.0, 135.0)]
    a.add_detections([rows[2], rows[0], rows[3], rows[1], ("door", 125.0, b"door")])
    assert b.detections("cam", 100.0, 130.0) == [b"frame 105.0", b"frame 115.0", b"frame 125.0"]
    b.remove(second.id)
    b.remove(second.id)  # already gone: another replica's retention came first
    assert a.detections("cam", 0.0, 1000.0) == [b"frame 105.0", b"frame 135.0"]
    assert a.detections("door", 0.0, 1000.0) == [b"door"]


# --- with real segment files -------------------------------------------------------------------


def record(
    index: RecordingIndex, root: pathlib.Path, writer: str, start: float, seconds: int
) -> list[Segment]:
    """``seconds`` of a small encoded recording of "cam" from ``start``, written by ``writer``
    in 2-second segments."""
    out = SegmentWriter(index, root, "cam", segment_s=2.0, writer=writer)
    rng = np.random.default_rng(seconds)
    frames = (
        (rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), start + n / FPS)
        for n in range(seconds * FPS + 1)
    )
    with FrameEncoder(160, 120, FPS, keyframe_s=1.0) as encoder:
        out.record(encoder.stream, encoder.packets(frames), pts_are_wall_clock=True)
    return [s for s in index.all_segments("cam") if s.writer == writer]


def test_a_new_owner_finishes_what_a_dead_writer_left_open_and_exports_both(
    indexes: Indexes, tmp_path: pathlib.Path
) -> None:
    a, b = indexes.open(), indexes.open()
    start = time.time() - 60
    before = record(a, indexes.root, "a", start, 6)
    # a dies with a segment open: indexed, its file written, never finished.
    last = before[-1]
    a.remove(last.id)
    left_open = a.begin(dataclasses.replace(last, id=0, end=last.start, bytes=0))
    assert b.unfinished("cam") == [left_open]
    # Its own recovery (a restarting) is a's business; the new owner b finishes other writers'.
    assert SegmentWriter(b, indexes.root, "cam", writer="b").recover() == []
    recovered = SegmentWriter(b, indexes.root, "cam", writer="b").recover(others=True)
    assert [s.id for s in recovered] == [left_open.id]
    assert recovered[0].end == pytest.approx(last.end, abs=0.3)
    after = record(b, indexes.root, "b", start + 10, 6)
    # One folder for the source, whoever writes; each writer's name in its files' names.
    assert {s.path.parent.parent for s in before + after} == {before[0].path.parent.parent}
    assert all("-a-" in s.path.name for s in before)
    assert all("-b-" in s.path.name for s in after)

    export = export_range(a, "cam", start, start + 16, tmp_path / "export.mp4")

    assert not export.cut_at_run_change
    assert export.start == pytest.approx(start, abs=0.01)
    assert export.end == pytest.approx(start + 16, abs=0.3)
    assert export.gaps == [Interval(recovered[0].end, after[0].start)]
    assert export.packets == 2 * 6 * FPS
    with av.open(str(export.path)) as container:
        times = [
            float(p.pts * p.time_base)
            for p in container.demux(video=0)
            if p.pts is not None and p.size
        ]
    # Both parts in order, without overlap, the gap kept in the timeline.
    assert times == sorted(times)
    assert len(set(times)) == len(times) == 2 * 6 * FPS
    assert times[6 * FPS] - times[6 * FPS - 1] == pytest.approx(4.0 + 1 / FPS, abs=0.05)


def test_retention_deletes_another_writers_files_with_their_rows(indexes: Indexes) -> None:
    a, b = indexes.open(), indexes.open()
    now = time.time()
    old = record(a, indexes.root, "a", now - 3 * DAY, 4)
    recent = record(b, indexes.root, "b", now - 60, 4)

    report = enforce(b, RetentionPolicy(default_days=2))

    assert {s.id for s in report.deleted} == {s.id for s in old}
    assert not any(s.path.exists() for s in old)
    assert all(s.path.exists() for s in recent)
    assert a.all_segments("cam") == recent
    # A source another replica runs is left to it.
    report = enforce(b, RetentionPolicy(default_days=0.0001, elsewhere=frozenset({"cam"})))
    assert report.deleted == []
