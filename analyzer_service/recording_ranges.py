"""Analyses of a camera's recording: the asked range is checked, fetched from the detector
service (its ExportRecording, through the analyzer's detector client) and stored as a video like
an upload: the same limits, hashing, probing in a media worker and storage.

The fetch happens inside StartAnalysis: the call answers once the video is stored, so every
refusal (no such camera, nothing recorded then, the detector down) is the call's own status and
no job exists for a range that cannot be analysed. Ranges are bounded (``max_recording_range_s``)
and the detector joins its segments without re-encoding, so the wait is the transfer of at most
that much recording.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2

from analyzer_service import uploads
from analyzer_service.detection import DetectorClient
from analyzer_service.isolation import MediaWorkers
from analyzer_service.media_storage import MediaStorage
from analyzer_service.settings import AnalyzerSettings
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import (
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    TooLarge,
    Unavailable,
    VigilError,
)
from vigil.sdk import ExportInfo

# Clocks of a caller and of this service may differ a little: a range ending "now" on the
# caller's clock is not refused as being in the future.
CLOCK_SKEW_S = 5.0
FIELD = "recording"


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def _utc(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_range(
    recording: pb.RecordingRange, settings: AnalyzerSettings, now: float
) -> tuple[float, float]:
    """The range's start and end in seconds since the epoch; InvalidInput saying what is wrong."""
    if not recording.source_id:
        raise InvalidInput("a recording range needs the camera's source_id", field=FIELD)
    if not (recording.HasField("start") and recording.HasField("end")):
        raise InvalidInput("a recording range needs its start and end", field=FIELD)
    start, end = _seconds(recording.start), _seconds(recording.end)
    if end <= start:
        raise InvalidInput("the recording range's end must be after its start", field=FIELD)
    if end - start > settings.max_recording_range_s:
        raise InvalidInput(
            f"a recording range of {end - start:.0f} s is longer than the limit of "
            f"{settings.max_recording_range_s:.0f} s",
            field=FIELD,
        )
    if end > now + CLOCK_SKEW_S:
        raise InvalidInput(
            f"the recording range ends in the future ({_utc(end)}; now is {_utc(now)})",
            field=FIELD,
        )
    return start, end


def video_name(source_id: str, start: float, end: float) -> str:
    day = datetime.datetime.fromtimestamp(start, datetime.UTC)
    until = datetime.datetime.fromtimestamp(end, datetime.UTC)
    return f"{source_id} {day:%Y-%m-%d %H:%M:%S}-{until:%H:%M:%S} UTC.mp4"


class RecordingFetcher:
    """Fetches ranges of the detector service's recordings and stores them as videos."""

    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        workers: MediaWorkers,
        detector: DetectorClient,
        storage: MediaStorage,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.detector = detector
        self.storage = storage

    async def fetch(self, recording: pb.RecordingRange) -> tuple[pb.Video, pb.RecordingRange]:
        """The range stored as a video (not yet in the job store), and what of the camera's
        recording the video covers: from the keyframe at or before the asked start (or the first
        one recorded after it) to the end of what is recorded before the asked end. The video's
        first instant is the covered start, so a moment it cites at [mm:ss] happened that long
        after it. The range must have passed ``check_range``."""
        source, start, end = recording.source_id, _seconds(recording.start), _seconds(recording.end)
        asked = f"{source!r} from {_utc(start)} to {_utc(end)}"
        stream = await self.detector.export(
            source, start, end, timeout_s=self.settings.recording_fetch_timeout_s
        )
        try:
            with self._explained(asked):
                info = await anext(stream, None)
            if not isinstance(info, ExportInfo):
                raise Unavailable(f"the detector service's export of {asked} did not describe it")
            if info.size > self.settings.max_upload_bytes:
                raise TooLarge(
                    f"the recording of {asked} is {info.size} bytes, over the limit of "
                    f"{self.settings.max_upload_bytes} bytes; ask for a shorter range"
                )
            await uploads.check_room(info.size, self.settings, self.storage)
            video = await uploads.store(
                self._chunks(stream, asked),
                name=video_name(source, info.start, info.end),
                size=info.size,
                settings=self.settings,
                workers=self.workers,
                storage=self.storage,
            )
        finally:
            stream.cancel()
        covered = pb.RecordingRange(source_id=source)
        covered.start.CopyFrom(info.proto.covered.start)
        covered.end.CopyFrom(info.proto.covered.end)
        return video, covered

    async def _chunks(
        self, stream: AsyncIterator[ExportInfo | bytes], asked: str
    ) -> AsyncIterator[bytes]:
        with self._explained(asked):
            async for item in stream:
                if isinstance(item, bytes):
                    yield item

    def _explained(self, asked: str) -> _Explained:
        return _Explained(self.detector.address, asked)


class _Explained:
    """Errors of the detector service said again as what they mean for this analysis."""

    def __init__(self, address: str, asked: str) -> None:
        self.address = address
        self.asked = asked

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, VigilError):
            return
        where = f"the detector service at {self.address}"
        if isinstance(exc, NotFound):
            raise NotFound(f"no recording of {self.asked}: {exc.message}") from exc
        if isinstance(exc, InvalidInput):
            raise InvalidInput(
                f"{where} refused the range {self.asked}: {exc.message}", field=FIELD
            ) from exc
        if isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(
                f"{where} took longer than the recording fetch timeout to send {self.asked}"
            ) from exc
        if isinstance(exc, Unavailable):
            raise Unavailable(
                f"{where} stopped sending the recording of {self.asked} ({exc.message}); try again"
            ) from exc
