"""The tracker over its incident history: what it opens is kept and paged, the page size bounded
(the stores' own contract: ``test_incident_stores.py``)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

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
