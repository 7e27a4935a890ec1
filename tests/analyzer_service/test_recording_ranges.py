"""Analyses of a camera's recording refused before any job exists: ranges checked, the
detector's answers (no such camera, nothing recorded) passed on, the detector down (retryable),
and the fetched file held to the upload limits, leaving nothing behind.

Without a model: what is tested here happens before one would be asked.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from analyzer_service.server import AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from detector_service.server import DetectorServer
from detector_service.server import serve as serve_detector
from detector_service.settings import DetectorSettings
from tests import recorded
from tests.analyzer_service.conftest import StartServer
from vigil.bench.rtsp import RtspCamera
from vigil.core.errors import InvalidInput, NotFound, TooLarge, Unavailable
from vigil.sdk import (
    AnalysisOptions,
    AsyncAnalyzerClient,
    AsyncDetectorClient,
    ClientOptions,
    RecordingRange,
)

pytestmark = pytest.mark.timeout(180)


def client_of(server: AnalyzerServer) -> AsyncAnalyzerClient:
    return AsyncAnalyzerClient(ClientOptions(f"127.0.0.1:{server.port}", timeout_s=60))


@pytest.fixture
async def detector(tmp_path: pathlib.Path) -> AsyncIterator[DetectorServer]:
    server = await serve_detector(
        DetectorSettings(
            port=0,
            backend="none",
            data_dir=tmp_path / "detector",
            recording_segment_s=recorded.SEGMENT_S,
        )
    )
    yield server
    await server.stop(0)


@pytest.fixture
def gate_camera() -> Iterator[RtspCamera]:
    with recorded.camera() as camera:
        yield camera


async def test_ranges_are_checked_before_the_detector_is_asked(server: AnalyzerServer) -> None:
    now = time.time()
    cases = [
        (RecordingRange("", now - 60, now), "needs the camera's source_id"),
        (RecordingRange("gate", now - 60, now - 60), "end must be after its start"),
        (RecordingRange("gate", now - 60, now - 120), "end must be after its start"),
        (RecordingRange("gate", now - 7300, now - 60), "longer than the limit of 3600 s"),
        (RecordingRange("gate", now - 60, now + 600), "ends in the future"),
    ]
    async with client_of(server) as client:
        for recording, said in cases:
            with pytest.raises(InvalidInput, match=said) as refused:
                await client.start_analysis(recording=recording)
            assert refused.value.field == "recording"
        ok = RecordingRange("gate", now - 60, now)
        with pytest.raises(InvalidInput, match="either video_id or recording"):
            await client.start_analysis("v1", recording=ok)
        with pytest.raises(InvalidInput, match=r"max_frames .* over the limit"):
            await client.start_analysis(recording=ok, options=AnalysisOptions(max_frames=100_000))
        assert (await client.list_jobs()).items == ()


async def test_a_detector_that_is_down_is_a_retryable_error_naming_it(
    server: AnalyzerServer,
) -> None:
    now = time.time()
    async with client_of(server) as client:
        with pytest.raises(Unavailable, match="cannot be reached to fetch the recording") as down:
            await client.analyze_recording("gate", now - 60, now)
        assert server.settings.detector_address in down.value.message
        assert down.value.retryable
        assert (await client.list_jobs()).items == ()


async def test_the_detectors_refusals_are_passed_on_and_limits_hold(
    start_server: StartServer,
    settings: AnalyzerSettings,
    detector: DetectorServer,
    gate_camera: RtspCamera,
) -> None:
    address = f"127.0.0.1:{detector.port}"
    start, end = await asyncio.to_thread(recorded.record, address, gate_camera.url())
    server = await start_server(settings.model_copy(update={"detector_address": address}))
    async with client_of(server) as client:
        with pytest.raises(NotFound, match=r"no recording of 'door' .*no source 'door'"):
            await client.analyze_recording("door", start, end)
        with pytest.raises(NotFound, match="nothing of gate is recorded in that range"):
            await client.analyze_recording("gate", start - 600, start - 300)
        # The range's file is held to the limits of an upload.
        async with AsyncDetectorClient(address) as detector_client:
            size = (await detector_client.export("gate", start, end)).info.size
        small = settings.model_copy(
            update={"detector_address": address, "max_upload_bytes": size - 1}
        )
        async with client_of(await start_server(small)) as limited:
            with pytest.raises(TooLarge, match="ask for a shorter range"):
                await limited.analyze_recording("gate", start, end)
        short = settings.model_copy(update={"detector_address": address, "max_duration_s": 1.0})
        async with client_of(await start_server(short)) as limited:
            with pytest.raises(InvalidInput, match="video refused: duration"):
                await limited.analyze_recording("gate", start, end)
        # Nothing was kept of the refused ones; a range within the limits becomes a job.
        assert list(settings.videos_dir.glob("*")) == []
        job = await client.analyze_recording("gate", start, end, AnalysisOptions(max_frames=2))
        assert job.video is not None
        assert [path.name for path in settings.videos_dir.iterdir()] == [job.video.id]
        assert (await client.get_job(job.id)).recording == job.recording
