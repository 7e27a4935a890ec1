"""The gRPC services at their edges: bearer tokens, deadlines that leave nothing behind, messages
over the size limit, and frames that are not what they claim.

Already covered elsewhere: Detect with a 1 ms deadline, a deadline mid-stream and an oversize
frame (tests/detector_service/test_detect_limits.py), a garbage frame in Detect
(tests/detector_service/test_detect.py).
"""

from __future__ import annotations

import asyncio
import pathlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from analyzer_service.detection import DetectorClient, DetectorUnavailable
from tests.faults.inputs import (
    grpc_upload,
    jpeg,
    mp4,
    refusal,
    running_analyzer,
    running_detector,
    running_stack,
    stored,
    upload_messages,
    wait_until_empty,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.core.serving import DEFAULT_MAX_MESSAGE_BYTES
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
from vigil.launcher import service_env

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-7f3a9c1e5b2d4a6c8e0f"
WRONG = [(), (("authorization", "Bearer nope"),), (("authorization", TOKEN),)]
WRONG += [(("authorization", f"Basic {TOKEN}"),), (("authorization", f"Bearer {TOKEN}x"),)]
RIGHT = (("authorization", f"Bearer {TOKEN}"),)


async def one_frame(then_wait: bool) -> AsyncIterator[dpb.DetectRequest]:
    yield dpb.DetectRequest(source_id="t", sequence=1, jpeg=jpeg())
    if then_wait:
        await asyncio.sleep(30)  # ended by the call ending


async def then_wait(messages: Iterator[apb.UploadVideoRequest]) -> AsyncIterator[Any]:
    """The messages, then silence until the call ends: a refusal then never races a write, which
    grpcio would report as INTERNAL instead of the refusal's status (grpc/grpc#36066)."""
    for message in messages:
        yield message
    await asyncio.sleep(30)


def detector_calls(stub: Any) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """One call of each shape, given the metadata to send."""

    async def first(call: Any) -> Any:
        async for item in call:
            call.cancel()
            return item
        return None

    return {
        "unary ListSources": lambda md: stub.ListSources(
            dpb.ListSourcesRequest(), metadata=md, timeout=5
        ),
        "server stream Subscribe": lambda md: first(
            stub.Subscribe(dpb.SubscribeRequest(omit_jpeg=True), metadata=md, timeout=5)
        ),
        "bidi stream Detect": lambda md: first(
            stub.Detect(one_frame(md != RIGHT), metadata=md, timeout=5)
        ),
    }


def analyzer_calls(stub: Any, video: bytes) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    return {
        "unary ListJobs": lambda md: stub.ListJobs(apb.ListJobsRequest(), metadata=md, timeout=5),
        "client stream UploadVideo": lambda md: stub.UploadVideo(
            upload_messages(video) if md == RIGHT else then_wait(upload_messages(video)),
            metadata=md,
            timeout=10,
        ),
    }


async def test_with_a_token_every_call_needs_it_except_health_and_reflection(
    tmp_path: pathlib.Path,
) -> None:
    video = mp4(tmp_path / "clip.mp4")
    async with (
        running_detector(token=TOKEN) as detector,
        running_analyzer(tmp_path / "data", token=TOKEN) as analyzer,
    ):
        for port in (detector.port, analyzer.port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                if port == detector.port:
                    calls = detector_calls(dpb_grpc.DetectorServiceStub(channel))
                else:
                    calls = analyzer_calls(apb_grpc.AnalyzerServiceStub(channel), video)
                for name, call in calls.items():
                    for metadata in WRONG:
                        error = await refusal(call(metadata))
                        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, (name, metadata)
                        assert error.details() == (
                            "UNAUTHENTICATED: a valid bearer token is required"
                        )
                    assert await call(RIGHT) is not None, name
                # Liveness probes and service discovery need no token.
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                async for answer in reflection.ServerReflectionInfo(iter([request]), timeout=5):
                    names = [s.name for s in answer.list_services_response.service]
                    assert any(n.startswith("vigil.") for n in names)
        # Refused uploads stored nothing: only the one with the token is kept.
        assert len(stored(analyzer.settings.videos_dir)) == 1


async def test_the_bridge_and_the_analyzer_pass_their_tokens_on(tmp_path: pathlib.Path) -> None:
    video = mp4(tmp_path / "clip.mp4")
    # One token for everything, as `vigil run` sets it from VIGIL_TOKEN.
    async with running_stack(
        tmp_path / "data",
        detector={"token": TOKEN},
        analyzer={"token": TOKEN, "detection_pass": True},
        bridge={"token": TOKEN},
    ) as stack:
        headers = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=stack.bridge.http, headers=headers) as http:
            assert (await http.get("/api/sources")).status_code == 200
            assert (await http.get("/api/analyses")).status_code == 200
            health = (await http.get("/health")).json()
            assert set(health["services"].values()) == {"SERVING"}, health
        # The analyzer's detection pass reaches the detector with the analyzer's token.
        client = DetectorClient(
            f"127.0.0.1:{stack.detector.port}",
            connect_timeout_s=2,
            call_timeout_s=10,
            token=stack.analyzer.settings.token,
        )
        frame = tmp_path / "frame.jpg"
        frame.write_bytes(jpeg())
        try:
            assert await client.detect([frame], source_id="t") == [[]]
        finally:
            await client.close()
        wrong = DetectorClient(
            f"127.0.0.1:{stack.detector.port}", connect_timeout_s=2, call_timeout_s=10
        )
        try:
            # grpcio may report a refusal that races the client's own writes as INTERNAL
            # "Internal error from Core" (grpc/grpc#36066); either way the frames are refused.
            pattern = "UNAUTHENTICATED|INTERNAL: Internal error from Core"
            with pytest.raises(DetectorUnavailable, match=pattern) as failed:
                await wrong.detect([frame], source_id="t")
            assert TOKEN not in str(failed.value)
        finally:
            await wrong.close()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.analyzer.port}") as channel:
            stub = apb_grpc.AnalyzerServiceStub(channel)
            uploaded = await stub.UploadVideo(upload_messages(video, start=True), metadata=RIGHT)
            job = await finished(stub, uploaded.job.id)
        assert job.state == apb.JOB_STATE_SUCCEEDED, job.error
        # No note saying the detector could not be used: the pass ran, token and all.
        assert not [n for n in job.result.notes if "could not be used" in n], job.result.notes
    # A bridge without the token the backends want maps their refusal to 401.
    async with (
        running_stack(
            tmp_path / "data2", detector={"token": TOKEN}, analyzer={"token": TOKEN}
        ) as stack,
        httpx.AsyncClient(base_url=stack.bridge.http) as http,
    ):
        response = await http.get("/api/sources")
        assert response.status_code == 401
        assert response.json() == {
            "code": "UNAUTHENTICATED",
            "message": "a valid bearer token is required",
        }


async def finished(stub: Any, job_id: str) -> apb.Job:
    async with asyncio.timeout(30):
        while True:
            reply = await stub.GetJob(apb.GetJobRequest(job_id=job_id), metadata=RIGHT, timeout=5)
            if reply.job.state not in (apb.JOB_STATE_QUEUED, apb.JOB_STATE_RUNNING):
                job: apb.Job = reply.job
                return job
            await asyncio.sleep(0.05)


def test_one_vigil_token_sets_every_service_token() -> None:
    env = service_env({"VIGIL_TOKEN": TOKEN})
    assert [env[f"VIGIL_{s}_TOKEN"] for s in ("DETECTOR", "ANALYZER", "BRIDGE")] == [TOKEN] * 3
    env = service_env({"VIGIL_TOKEN": TOKEN, "VIGIL_DETECTOR_TOKEN": "own"})
    assert env["VIGIL_DETECTOR_TOKEN"] == "own"
    assert "VIGIL_BRIDGE_TOKEN" not in service_env({})


def test_the_detector_asks_the_analyzer_to_verify_only_when_a_model_is_configured() -> None:
    assert "VIGIL_DETECTOR_ANALYZER_URL" not in service_env({})
    assert "VIGIL_DETECTOR_ANALYZER_URL" not in service_env({"VIGIL_ANALYZER_ENGINE": "none"})
    env = service_env(
        {"VIGIL_ANALYZER_ENGINE": "vllm", "VIGIL_ANALYZER_PORT": "7001", "VIGIL_TOKEN": TOKEN}
    )
    assert env["VIGIL_DETECTOR_ANALYZER_URL"] == "127.0.0.1:7001"
    assert env["VIGIL_DETECTOR_ANALYZER_TOKEN"] == TOKEN


async def accepted_soon(stub: Any, video: bytes, within_s: float) -> apb.UploadVideoResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await grpc_upload(stub, video)
        except grpc.aio.AioRpcError as error:
            overloaded = (error.details() or "").startswith("OVERLOADED")
            if not overloaded or loop.time() > deadline:
                raise
        await asyncio.sleep(0.02)


async def collect(call: Any, into: list[Any]) -> None:
    async for item in call:
        into.append(item)


async def subscribers(stub: Any, source_id: str = "default") -> int:
    reply = await stub.GetSource(dpb.GetSourceRequest(source_id=source_id), timeout=5)
    count: int = reply.source.counters.subscribers
    return count


async def test_deadlines_end_the_work_and_leave_nothing_behind(tmp_path: pathlib.Path) -> None:
    video = mp4(tmp_path / "clip.mp4")
    async with (
        running_detector() as detector,
        running_analyzer(tmp_path / "data", max_concurrent_uploads=1) as analyzer,
        grpc.aio.insecure_channel(f"127.0.0.1:{detector.port}") as dchannel,
        grpc.aio.insecure_channel(f"127.0.0.1:{analyzer.port}") as achannel,
    ):
        dstub = dpb_grpc.DetectorServiceStub(dchannel)
        astub = apb_grpc.AnalyzerServiceStub(achannel)
        # Subscribe with 1 ms: DEADLINE_EXCEEDED; with 300 ms: frames, then DEADLINE_EXCEEDED,
        # and in both cases no subscriber is left on the source.
        for deadline in (0.001, 0.3):
            call = dstub.Subscribe(dpb.SubscribeRequest(omit_jpeg=True), timeout=deadline)
            received: list[dpb.SubscribeResponse] = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await collect(call, received)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert received or deadline < 0.01
            async with asyncio.timeout(3):
                while await subscribers(dstub):  # noqa: ASYNC110 - polling the service's count
                    await asyncio.sleep(0.02)
        # An upload whose deadline passes mid-way: no part file, and its upload slot (one here)
        # is free for the next one.

        async def stalls() -> AsyncIterator[apb.UploadVideoRequest]:
            messages = upload_messages(video)
            yield next(messages)
            yield next(messages)
            await asyncio.sleep(30)

        for deadline in (0.001, 0.5):
            error = await refusal(astub.UploadVideo(stalls(), timeout=deadline))
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert await wait_until_empty(analyzer.settings.videos_dir) == []
            # The handler is cancelled a moment after the deadline: within a second its slot
            # is free again (until then a new upload is told OVERLOADED, retryable).
            accepted = await accepted_soon(astub, video, within_s=1.0)
            assert accepted.video.frame_count == 20
            (analyzer.settings.videos_dir / accepted.video.id).unlink()
        # A job's event stream with 1 ms: DEADLINE_EXCEEDED, and no subscriber left on the bus.
        accepted = await grpc_upload(astub, video)
        started = await astub.StartAnalysis(
            apb.StartAnalysisRequest(video_id=accepted.video.id), timeout=5
        )
        request = apb.StreamAnalysisEventsRequest(job_id=started.job.id)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in astub.StreamAnalysisEvents(request, timeout=0.001):
                pass
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        async with asyncio.timeout(3):
            while analyzer.jobs.bus._subscribers:  # type: ignore[attr-defined]  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert analyzer.jobs.bus._subscribers == {}  # type: ignore[attr-defined]


async def test_an_oversize_upload_chunk_is_resource_exhausted(tmp_path: pathlib.Path) -> None:
    video = mp4(tmp_path / "clip.mp4")
    size = DEFAULT_MAX_MESSAGE_BYTES + 1024

    async def oversize() -> AsyncIterator[apb.UploadVideoRequest]:
        yield apb.UploadVideoRequest(header=apb.UploadHeader(name="big.mp4", size=size))
        yield apb.UploadVideoRequest(chunk=bytes(size))

    async with (
        running_analyzer(tmp_path / "data") as analyzer,
        grpc.aio.insecure_channel(
            f"127.0.0.1:{analyzer.port}", options=[("grpc.max_send_message_length", 2 * size)]
        ) as channel,
    ):
        stub = apb_grpc.AnalyzerServiceStub(channel)
        error = await refusal(stub.UploadVideo(oversize(), timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await wait_until_empty(analyzer.settings.videos_dir) == []
        assert (await grpc_upload(stub, video)).video.frame_count == 20


def claiming(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0) claiming another size."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


async def test_frames_that_lie_get_an_error_each_and_the_stream_goes_on() -> None:
    good = jpeg()
    png_header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", 10**5, 10**5)
    frames = {
        1: good,
        2: claiming(good, 65535, 65535),  # 4 gigapixels claimed: refused before decoding
        3: png_header + bytes(64),
        4: good[: len(good) // 3] + bytes(len(good)),  # a JPEG cut short and zero-filled
        5: b"\xff\xd8\xff" + bytes(1000),
        6: b"",
        7: good,
    }

    async def requests() -> AsyncIterator[dpb.DetectRequest]:
        for sequence, data in frames.items():
            yield dpb.DetectRequest(source_id="lies", sequence=sequence, jpeg=data)

    async with (
        running_detector() as detector,
        grpc.aio.insecure_channel(f"127.0.0.1:{detector.port}") as channel,
    ):
        stub = dpb_grpc.DetectorServiceStub(channel)
        answers = {r.sequence: r async for r in stub.Detect(requests(), timeout=10)}
    assert sorted(answers) == sorted(frames)
    for sequence in (1, 7):
        assert not answers[sequence].HasField("error")
        assert (answers[sequence].width, answers[sequence].height) == (160, 120)
    for sequence in (2, 3, 5, 6):
        assert answers[sequence].error.code == "INVALID_IMAGE", sequence
    assert "too large" in answers[2].error.message
    assert "too large" in answers[3].error.message
    # A truncated JPEG decodes to what arrived, or is refused: never anything else.
    assert answers[4].error.code in ("", "INVALID_IMAGE")
