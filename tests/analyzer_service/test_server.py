"""The analyzer over real gRPC: health, uploads, refusals and the job pipeline without a model."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pathlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from analyzer_service.pipeline import NO_MODEL_PROGRESS
from analyzer_service.server import SERVICE_NAME, AnalyzerServer
from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    CHUNK,
    StartServer,
    Stub,
    connect,
    events_of,
    kinds,
    steps,
    upload,
    upload_requests,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.core.errors import Unavailable


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


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_replica_starting_leaves_the_uploads_other_replicas_are_receiving(
    start_server: StartServer, settings: AnalyzerSettings
) -> None:
    """On PostgreSQL the data directory is shared: only part files idle past the upload
    timeout are from crashes."""
    settings.videos_dir.mkdir(parents=True)
    (settings.videos_dir / "live.part").write_bytes(b"an upload in progress")
    dead = settings.videos_dir / "dead.part"
    dead.write_bytes(b"half an upload")
    long_ago = time.time() - settings.upload_idle_timeout_s - 60
    os.utime(dead, (long_ago, long_ago))
    await start_server()
    assert [p.name for p in settings.videos_dir.iterdir()] == ["live.part"]


async def test_an_upload_whose_row_cannot_be_kept_leaves_no_video(
    server: AnalyzerServer,
    stub: Stub,
    settings: AnalyzerSettings,
    short_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database failing after the video was stored: the caller is told, and the storage
    (shared by every replica) keeps no video that nothing names."""

    async def failing(video: pb.Video) -> None:
        raise Unavailable("the database is restarting")

    monkeypatch.setattr(server.store, "create_video", failing)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(stub, short_bytes)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "the database is restarting" in (refused.value.details() or "")
    assert stored_files(settings) == []


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_upload_stores_probes_and_completes_without_a_model(
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
    assert [e.sequence for e in events] == list(range(1, 10))
    assert {e.job_id for e in events} == {response.job.id}
    assert kinds(events) == ["progress"] * 8 + ["complete"]
    # The default policy is adaptive; the detector is unreachable and no model is configured.
    scanned = events[2].progress.message
    assert scanned.startswith("Scanned 64 moments for scene changes (")
    assert steps(events) == [
        (pb.STAGE_INITIALIZING, 10, "Starting video analysis..."),
        (pb.STAGE_EXTRACTING_FRAMES, 25, "Extracting frames from video..."),
        (pb.STAGE_EXTRACTING_FRAMES, 35, scanned),
        (pb.STAGE_DETECTING, 40, "Looking for weapons and people in 64 frames..."),
        (pb.STAGE_DETECTING, 45, "Detector unavailable; continuing without detections"),
        (pb.STAGE_EXTRACTING_FRAMES, 50, "Extracted 16 frames (0.1 min)"),
        (pb.STAGE_INFERENCE, 75, NO_MODEL_PROGRESS),
        (pb.STAGE_COMPLETE, 100, events[7].progress.message),
    ]
    assert events[7].progress.message.startswith("Analysis complete in ")
    result = events[-1].complete.result
    assert events[-1].complete.timings == result.timings
    assert result.summary == ""
    assert result.model == ""
    detector_note, model_note = result.notes
    assert "could not be used" in detector_note
    assert settings.detector_address in detector_note
    assert "No language model was configured" in model_note
    assert "VIGIL_ANALYZER_ENGINE=vllm" in model_note
    assert "VIGIL_ANALYZER_MODEL=google/gemma-3-4b-it" in model_note
    assert len(result.frames) == 16
    times = [f.time_s for f in result.frames]
    assert times == sorted(times)
    assert all(f.reason in ("uniform", "scene_change") for f in result.frames)
    assert all(not f.detections for f in result.frames)
    timings = result.timings
    assert 0 < timings.probe_s < timings.total_s
    assert 0 < timings.sampling_s < timings.total_s
    assert 0 < timings.detection_s < timings.total_s
    assert timings.inference_s == 0

    job = (await stub.GetJob(pb.GetJobRequest(job_id=response.job.id))).job
    assert job.state == pb.JOB_STATE_SUCCEEDED
    assert job.result == result
    assert not job.HasField("error")
    assert (job.stage, job.percent, job.attempts) == (pb.STAGE_COMPLETE, 100, 1)
    frames_dir = settings.jobs_dir / job.id / "frames"
    assert len(sorted(frames_dir.glob("*.jpg"))) == 16
    manifest = json.loads((frames_dir / "frames.json").read_text())
    assert [m["time_s"] for m in manifest] == times
    assert all((frames_dir / m["file"]).exists() for m in manifest)


async def test_upload_without_start_then_start_analysis(stub: Stub, short_bytes: bytes) -> None:
    response = await upload(stub, short_bytes, start=False)
    assert not response.HasField("job")
    started = await stub.StartAnalysis(pb.StartAnalysisRequest(video_id=response.video.id))
    assert started.job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    events = await events_of(stub, started.job.id)
    assert kinds(events)[-1] == "complete"


SEED = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)


async def test_long_video_is_announced_and_gets_8_seed_frames(
    stub: Stub, long_bytes: bytes
) -> None:
    response = await upload(stub, long_bytes, options=SEED)
    events = await events_of(stub, response.job.id)
    assert kinds(events)[:2] == ["progress", "long_video_detected"]
    notice = events[1].long_video_detected
    assert notice.duration_s == pytest.approx(3900.0)
    assert "65.0 min" in notice.message
    assert "120+" not in notice.message
    assert "Extracted 8 frames (65.0 min)" in [message for _, _, message in steps(events)]
    result = events[-1].complete.result
    assert [f.reason for f in result.frames] == ["seed"] * 8


async def test_long_video_gets_the_adaptive_budget(stub: Stub, long_bytes: bytes) -> None:
    response = await upload(stub, long_bytes)
    events = await events_of(stub, response.job.id)
    assert "sampling 16 frames" in events[1].long_video_detected.message
    assert "Extracted 16 frames (65.0 min)" in [message for _, _, message in steps(events)]
    assert kinds(events)[-1] == "complete"


async def test_a_120_minute_video_gets_the_120_plus_notice(
    start_server: StartServer, settings: AnalyzerSettings, very_long_bytes: bytes
) -> None:
    server = await start_server(settings.model_copy(update={"max_duration_s": 3 * 3600.0}))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        response = await upload(stub, very_long_bytes, options=SEED)
        events = await events_of(stub, response.job.id)
    notice = events[1].long_video_detected
    assert "120+ minute" in notice.message
    assert "Extracted 8 frames (121.0 min)" in [message for _, _, message in steps(events)]


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
