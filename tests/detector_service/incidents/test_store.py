"""The SQLite incident history: persistence, paging newest first, snapshots on request."""

from __future__ import annotations

import pathlib
import random

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.incidents.store import IncidentStore
from tests.detector_service.incidents.conftest import Trackers
from tests.detector_service.incidents.helpers import START_NS, Camera, det, frame_jpeg
from vigil.detector.v1 import detector_service_pb2 as pb


def incident(n: int, source_id: str = "cam", closed: bool = False) -> pb.Incident:
    opened = Timestamp()
    opened.FromNanoseconds(START_NS + n * 10**9)
    made = pb.Incident(
        id=f"{n:032x}",
        source_id=source_id,
        class_name="knife",
        opened_at=opened,
        peak_confidence=0.5,
        detections=[det()],
        snapshot_jpeg=frame_jpeg(n),
    )
    if closed:
        made.closed_at.FromNanoseconds(START_NS + n * 10**9 + 5 * 10**9)
    return made


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "history" / "incidents.sqlite3"


async def test_incidents_survive_reopening(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    store.save(incident(1))
    store.save(incident(1, closed=True))  # the same incident, closed: replaces, not duplicates
    store.save(incident(2))
    store.set_clip_path(incident(1).id, "/clips/1.avi")
    store.close()

    again = IncidentStore(db_path)
    try:
        found, token = await again.list("", 10, "", include_snapshot=True)
        assert token == ""
        assert [i.id for i in found] == [incident(2).id, incident(1).id]
        expected = incident(1, closed=True)
        expected.clip_path = "/clips/1.avi"
        assert found[1] == expected
        assert found[0] == incident(2)
        assert await again.get(incident(2).id) == incident(2)
        assert await again.get("nope") is None
    finally:
        again.close()


async def test_pages_newest_first_with_tokens(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    order = list(range(1, 8))
    random.Random(7).shuffle(order)  # the order of opening decides, not the order of writing
    for n in order:
        store.save(incident(n, source_id="cam-a" if n % 2 else "cam-b"))
    try:
        pages: list[list[str]] = []
        token = ""
        while True:
            found, token = await store.list("", 3, token, include_snapshot=False)
            pages.append([i.id for i in found])
            if not token:
                break
        assert pages == [[incident(n).id for n in ns] for ns in ([7, 6, 5], [4, 3, 2], [1])]

        found, token = await store.list("cam-b", 2, "", include_snapshot=False)
        assert [i.id for i in found] == [incident(6).id, incident(4).id]
        found, token = await store.list("cam-b", 2, token, include_snapshot=False)
        assert [i.id for i in found] == [incident(2).id]
        assert token == ""

        with pytest.raises(ValueError, match="page token"):
            await store.list("", 3, "not-a-token", include_snapshot=False)
    finally:
        store.close()


async def test_snapshot_only_when_asked(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    store.save(incident(1))
    try:
        (without,), _ = await store.list("", 10, "", include_snapshot=False)
        (with_,), _ = await store.list("", 10, "", include_snapshot=True)
        assert without.snapshot_jpeg == b""
        assert with_.snapshot_jpeg == frame_jpeg(1)
        without.snapshot_jpeg = with_.snapshot_jpeg
        assert without == with_
    finally:
        store.close()


async def test_tracker_persists_its_incidents_and_pages(trackers: Trackers) -> None:
    tracker = trackers.make(min_frames=1, window=1, close_after_s=0.1, cooldown_s=0)
    cam = Camera(tracker)
    for _ in range(3):
        cam.frame(det("knife"))
        cam.frame()
    cam.frame(det("gun"))  # still open when listed: the listing reads after every save

    page = await tracker.list("", 0, "", include_snapshot=False)
    assert [i.class_name for i in page.incidents] == ["gun", "knife", "knife", "knife"]
    assert page.next_page_token == ""
    assert not page.incidents[0].HasField("closed_at")
    assert all(i.HasField("closed_at") for i in page.incidents[1:])
    assert all(i.snapshot_jpeg == b"" for i in page.incidents)

    first = await tracker.list("cam", 3, "", include_snapshot=True)
    rest = await tracker.list("cam", 3, first.next_page_token, include_snapshot=True)
    assert [i.id for i in first.incidents] + [i.id for i in rest.incidents] == [
        i.id for i in page.incidents
    ]
    assert first.incidents[0].snapshot_jpeg == frame_jpeg(6)
    assert (await tracker.list("elsewhere", 10, "", include_snapshot=False)).incidents == []


async def test_page_size_defaults_to_50_and_stops_at_500(trackers: Trackers) -> None:
    tracker = trackers.make()
    for n in range(501):
        tracker.store.save(incident(n))
    page = await tracker.list("", 0, "", include_snapshot=False)
    assert len(page.incidents) == 50
    page = await tracker.list("", 10_000, "", include_snapshot=False)
    assert len(page.incidents) == 500
    assert page.next_page_token
