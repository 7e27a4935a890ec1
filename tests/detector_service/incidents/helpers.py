"""Scripted frames for incident tests: detections, small JPEGs and a clock that only moves on."""

from __future__ import annotations

import asyncio
import functools

import cv2
import numpy as np

from detector_service.incidents.subscription import IncidentSubscription
from detector_service.incidents.tracker import IncidentTracker
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

FRAME_NS = 100_000_000  # 10 frames a second
START_NS = 1_700_000_000 * 10**9


def det(
    class_name: str = "knife", confidence: float = 0.8, weapon: bool = True
) -> common_pb2.Detection:
    return common_pb2.Detection(
        class_name=class_name,
        confidence=confidence,
        is_weapon=weapon,
        box=common_pb2.BoundingBox(x_min=10, y_min=10, x_max=50, y_max=40),
    )


@functools.cache
def frame_jpeg(index: int) -> bytes:
    """A distinct 160×120 JPEG per index (its grey level and a bar encode the index)."""
    image = np.full((120, 160, 3), index * 7 % 256, np.uint8)
    cv2.rectangle(image, (index % 150, 0), (index % 150 + 10, 119), (0, 0, 255), -1)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf)


class Camera:
    """Feeds one source's frames to a tracker at a fixed frame interval of scripted time."""

    def __init__(
        self,
        tracker: IncidentTracker,
        source_id: str = "cam",
        start_ns: int = START_NS,
        frame_ns: int = FRAME_NS,
    ) -> None:
        self.tracker = tracker
        self.source_id = source_id
        self.now_ns = start_ns
        self.frame_ns = frame_ns
        self.index = 0

    def frame(self, *detections: common_pb2.Detection) -> int:
        """Observe one frame at the current time, then step the clock; returns the frame's time."""
        at = self.now_ns
        self.tracker.observe(self.source_id, detections, frame_jpeg(self.index), at)
        self.index += 1
        self.now_ns += self.frame_ns
        return at

    def frames(self, count: int, *detections: common_pb2.Detection) -> list[int]:
        return [self.frame(*detections) for _ in range(count)]

    def skip(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)


async def drain(sub: IncidentSubscription) -> list[pb.StreamIncidentsResponse]:
    """Events already handed to the loop (observe on the loop thread schedules them at once)."""
    for _ in range(3):
        await asyncio.sleep(0)
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


def kinds(events: list[pb.StreamIncidentsResponse]) -> list[str]:
    return [pb.IncidentEventType.Name(e.type).removeprefix("INCIDENT_EVENT_TYPE_") for e in events]
