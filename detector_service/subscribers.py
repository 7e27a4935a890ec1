"""What a live source hands out: processed frames, shared read-only by every subscriber, each
subscriber's own newest-wins queue (a slow one loses frames, never slows the others), and the
observer that sees every frame of every source (the incident tracker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from detector_service.backends.base import Image
from vigil.common.v1 import common_pb2
from vigil.core.queues import NewestWinsQueue
from vigil.detector.v1 import detector_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class WeaponCrop:
    """A weapon box and its pixels, copied from the frame as captured (before boxes are drawn),
    at the detection stream's full resolution: what the language model checks."""

    detection: common_pb2.Detection
    pixels: Image


@dataclass(frozen=True, slots=True)
class Processed:
    """One processed frame, shared read-only by every subscriber."""

    sequence: int
    capture_ns: int
    jpeg: bytes
    width: int
    height: int
    detections: list[common_pb2.Detection]
    inference_ms: float
    error: common_pb2.Error | None
    source_id: str = ""
    crops: tuple[WeaponCrop, ...] = ()


class FrameObserver(Protocol):
    """Sees every processed frame of every source (the incident tracker), on processing threads."""

    def observe(
        self,
        source_id: str,
        detections: Sequence[common_pb2.Detection],
        jpeg: bytes,
        time_ns: int,
        crops: Sequence[WeaponCrop] = (),
    ) -> None: ...

    def end_source(self, source_id: str) -> None: ...


class Subscriber:
    def __init__(self, maxsize: int, omit_jpeg: bool, main_stream: bool = False) -> None:
        self.frames: NewestWinsQueue[Processed] = NewestWinsQueue(maxsize)
        # State changes are rare and must not be lost to frame drops: a separate, latest-only box.
        self.state: pb.Source | None = None
        self.omit_jpeg = omit_jpeg
        # Frames come from the source's main view (main_view.py), not its detection stream.
        self.main_stream = main_stream

    def push_state(self, source: pb.Source) -> None:
        self.state = source
        self.frames.wake()

    async def next(self) -> pb.SubscribeResponse:
        while True:
            if self.state is not None:
                state, self.state = self.state, None
                return pb.SubscribeResponse(source=state)
            if len(self.frames) or self.frames.closed:
                item = await self.frames.get()
                return pb.SubscribeResponse(frame=self._frame(item))
            await self.frames.wait()

    def _frame(self, item: Processed) -> pb.Frame:
        ts = Timestamp()
        ts.FromNanoseconds(item.capture_ns)
        return pb.Frame(
            source_id=item.source_id,
            sequence=item.sequence,
            capture_time=ts,
            jpeg=b"" if self.omit_jpeg else item.jpeg,
            width=item.width,
            height=item.height,
            detections=item.detections,
            dropped=self.frames.dropped,
            detection_error=item.error,
            inference_ms=item.inference_ms,
        )
