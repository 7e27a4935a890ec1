"""The analyzer over real gRPC: health, uploads, refusals and the job pipeline without a model."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from analyzer_service.server import SERVICE_NAME, AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    CHUNK,
    StartServer,
    Stub,
    connect,
    events_of,
    upload,
    upload_requests,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc


def stored_files(settings: AnalyzerSettings) -> list[pathlib.Path]:
    return sorted(settings.videos_dir.iterdir())


async def test_health_is_serving(server: AnalyzerServer) -> None:
    async with connect(server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_start_removes_uploads_cut_off_by_a_crash(
    start_server: StartServer, settings: AnalyzerSettings
) -> None:
    settings.videos_dir.mkdir(parents=True)
    (settings.videos_dir / "0123.part").write_bytes(b"half an upload")
    await start_server()
    assert stored_files(settings) == []


async def test_upload_stores_probes_and_runs_to_model_not_configured(
    stub: Stub, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    data = short_bytes
    response = await upload(stub, data, name="../lobby cam.mp4")
    video = response.video
    assert video.name == "lobby cam.mp4"
    assert (video.size, video.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (video.width, video.height, video.fps, video.frame_count) == (1280, 720, 30.0, 150)
    assert video.duration_s == pytest.approx(5.0)
    assert video.codec == "mpeg4"
    assert video.HasField("uploaded_at")
    assert stored_files(settings) == [settings.videos_dir / video.id]
    assert (settings.videos_dir / video.id).read_bytes() == data
    assert response.job.id
    assert response.job.video == video

    events = await events_of(stub, response.job.id)
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert {e.job_id for e in events} == {response.job.id}
    steps = [(e.progress.stage, e.progress.percent, e.progress.message) for e in events[:3]]
    assert steps == [
        (pb.STAGE_INITIALIZING, 10, "Starting video analysis..."),
        (pb.STAGE_EXTRACTING_FRAMES, 25, "Extracting frames from video..."),
        (pb.STAGE_EXTRACTING_FRAMES, 50, "Extracted 3 frames (0.1 min)"),
    ]
    error = events[3].error
    assert error.code == "MODEL_NOT_CONFIGURED"
    assert "No language model is configured" in error.message
    assert "VIGIL_ANALYZER_ENGINE=vllm" in error.message
    assert "VIGIL_ANALYZER_MODEL=google/gemma-3-4b-it" in error.message
    assert not error.retryable

    job = (await stub.GetJob(pb.GetJobRequest(job_id=response.job.id))).job
    assert job.state == pb.JOB_STATE_FAILED
    assert job.error == error
    assert (job.stage, job.percent, job.attempts) == (pb.STAGE_EXTRACTING_FRAMES, 50, 1)
    frames = sorted((settings.jobs_dir / job.id / "frames").glob("*.jpg"))
    assert len(frames) == 3


async def test_upload_without_start_then_start_analysis(stub: Stub, short_bytes: bytes) -> None:
    response = await upload(stub, short_bytes, start=False)
    assert not response.HasField("job")
    started = await stub.StartAnalysis(pb.StartAnalysisRequest(video_id=response.video.id))
    assert started.job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    events = await events_of(stub, started.job.id)
    assert events[-1].error.code == "MODEL_NOT_CONFIGURED"


async def test_long_video_is_announced_and_gets_8_frames(stub: Stub, long_bytes: bytes) -> None:
    response = await upload(stub, long_bytes)
    events = await events_of(stub, response.job.id)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["progress", "long_video_detected", "progress", "progress", "error"]
    notice = events[1].long_video_detected
    assert notice.duration_s == pytest.approx(3900.0)
    assert "65.0 min" in notice.message
    assert "120+" not in notice.message
    assert events[3].progress.message == "Extracted 8 frames (65.0 min)"


async def test_a_120_minute_video_gets_the_120_plus_notice(
    start_server: StartServer, settings: AnalyzerSettings, very_long_bytes: bytes
) -> None:
    server = await start_server(settings.model_copy(update={"max_duration_s": 3 * 3600.0}))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        response = await upload(stub, very_long_bytes)
        events = await events_of(stub, response.job.id)
    notice = events[1].long_video_detected
    assert "120+ minute" in notice.message
    assert events[3].progress.message == "Extracted 8 frames (121.0 min)"


async def expect_refusal(call: object, code: grpc.StatusCode, match: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code
    assert match in (caught.value.details() or "")
    return caught.value


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<!doctype html><html><body>Not a video</body></html>" * 100, "not a usable video"),
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5000, "not a usable video"),
        (b"", "empty"),
    ],
)
async def test_what_is_not_a_video_is_refused_and_removed(
    stub: Stub, settings: AnalyzerSettings, content: bytes, reason: str
) -> None:
    await expect_refusal(
        stub.UploadVideo(upload_requests(content, name="movie.mp4")),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
    )
    assert stored_files(settings) == []
    assert (await stub.ListJobs(pb.ListJobsRequest())).jobs == []


async def test_a_video_over_the_limits_is_refused(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    server = await start_server(settings.model_copy(update={"max_width": 640, "max_height": 480}))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        await expect_refusal(
            upload(stub, short_bytes),
            grpc.StatusCode.INVALID_ARGUMENT,
            "size 1280x720 is over the limit of 640x480",
        )
    assert stored_files(settings) == []


async def then_silent(
    requests: Iterator[pb.UploadVideoRequest],
) -> AsyncIterator[pb.UploadVideoRequest]:
    """Send ``requests``, then keep the stream open without sending anything.

    Refusals that come mid-stream must come from the server by itself; and with nothing in
    flight, no client send races the server's answer (grpc.aio reports such a race as INTERNAL).
    """
    for request in requests:
        yield request
    await asyncio.Event().wait()


async def test_an_upload_is_cut_off_the_moment_it_passes_the_size_limit(
    start_server: StartServer, settings: AnalyzerSettings
) -> None:
    limit = 3 * CHUNK
    server = await start_server(settings.model_copy(update={"max_upload_bytes": limit}))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        over = upload_requests(b"\x00" * (limit + CHUNK), size=limit)
        await expect_refusal(
            asyncio.wait_for(stub.UploadVideo(then_silent(over)), 5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_LARGE",
        )
        # A declared size over the limit is refused before any bytes.
        await expect_refusal(
            stub.UploadVideo(upload_requests(b"", size=limit + 1)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_LARGE",
        )
    assert stored_files(settings) == []


async def test_declared_size_must_match(
    stub: Stub, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    data = short_bytes
    await expect_refusal(
        stub.UploadVideo(upload_requests(data, size=len(data) + 1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "declared",
    )
    await expect_refusal(
        stub.UploadVideo(then_silent(upload_requests(data, size=len(data) - 1))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "declared size",
    )
    assert stored_files(settings) == []


async def test_the_header_must_come_first_and_only_once(stub: Stub) -> None:
    await expect_refusal(
        stub.UploadVideo(iter([pb.UploadVideoRequest(chunk=b"abc")])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "first message",
    )
    header = pb.UploadVideoRequest(header=pb.UploadHeader(name="a.mp4", size=3))
    await expect_refusal(
        stub.UploadVideo(then_silent(iter([header, header]))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "only the first message",
    )


async def test_bad_options_are_refused_before_the_upload(stub: Stub, short_bytes: bytes) -> None:
    await expect_refusal(
        upload(stub, short_bytes, options=pb.AnalysisOptions(max_frames=100_000)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "max_frames",
    )


async def test_unknown_ids_are_not_found(stub: Stub) -> None:
    not_found = grpc.StatusCode.NOT_FOUND
    await expect_refusal(stub.GetJob(pb.GetJobRequest(job_id="x")), not_found, "no job")
    await expect_refusal(stub.CancelJob(pb.CancelJobRequest(job_id="x")), not_found, "no job")
    await expect_refusal(
        stub.StartAnalysis(pb.StartAnalysisRequest(video_id="x")), not_found, "no video"
    )
    await expect_refusal(events_of(stub, "x"), not_found, "no job")


async def test_chat_without_a_model_says_how_to_configure_one(
    stub: Stub, short_bytes: bytes
) -> None:
    response = await upload(stub, short_bytes)
    call = stub.Chat(pb.ChatRequest(job_id=response.job.id, question="Who came in?"))
    error = await expect_refusal(
        call.read(), grpc.StatusCode.FAILED_PRECONDITION, "MODEL_NOT_CONFIGURED"
    )
    assert "VIGIL_ANALYZER_ENGINE=vllm" in (error.details() or "")
