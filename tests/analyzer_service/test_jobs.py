"""Jobs over real gRPC: replay and resume, live following, queueing, cancelling, restarts."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    Stub,
    connect,
    events_of,
    is_chat,
    kinds,
    upload,
    wait_for_event,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

SEED = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)


async def test_a_late_subscriber_replays_everything_and_a_resume_skips_what_it_saw(
    stub: Stub, short_bytes: bytes
) -> None:
    job_id = (await upload(stub, short_bytes)).job.id
    first = await events_of(stub, job_id)
    # Long after the job ended: the whole history, ending with the terminal event.
    again = await events_of(stub, job_id)
    assert again == first
    assert [e.sequence for e in first] == list(range(1, 10))
    assert kinds(first)[-1] == "complete"
    resumed = await events_of(stub, job_id, after=2)
    assert resumed == first[2:]
    assert await events_of(stub, job_id, after=9) == []


async def test_following_live_sees_each_event_once_in_order(
    start_server: StartServer, short_bytes: bytes
) -> None:
    engine = FakeEngine(text="A person enters at [00:02] and leaves at [00:04].")
    server = await start_server(engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        job = (await stub.StartAnalysis(start)).job
        followers = await asyncio.gather(*(events_of(stub, job.id) for _ in range(3)))
        stored = await events_of(stub, job.id)
        final = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    for events in followers:
        assert events == stored
    assert [e.sequence for e in stored] == list(range(1, len(stored) + 1))
    assert kinds(stored) == ["progress"] * 6 + ["thinking", "progress", "complete"]
    percents = [e.progress.percent for e in stored if e.HasField("progress")]
    assert percents == [10, 25, 40, 45, 50, 75, 100]
    assert stored[6].thinking.frame_count == 3
    result = stored[-1].complete.result
    assert result.summary.split() == engine.text.split()
    assert result.model == "fake/model"
    assert [f.reason for f in result.frames] == ["seed"] * 3
    assert result.timings.inference_s > 0
    assert len(result.notes) == 1  # the detector was unreachable; a model was there
    assert final.state == pb.JOB_STATE_SUCCEEDED
    assert final.result == result
    (request,) = engine.requests
    assert len(request.images) == 3
    assert all(path.exists() for path in request.images)
    assert request.labels[0] == "[00:00]"
    assert len(request.labels) == 3


async def test_cancel_stops_a_running_job(start_server: StartServer, short_bytes: bytes) -> None:
    engine = FakeEngine(block=True)
    server = await start_server(engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        await wait_for_event(stub, job_id, "thinking")
        cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))).job
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        assert cancelled.error.code == "CANCELLED"
        events = await events_of(stub, job_id)
        assert events[-1].error.code == "CANCELLED"
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert engine.aborted == [job_id]
        # Cancelling a finished job changes nothing.
        again = (await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))).job
        assert again == cancelled
        assert await events_of(stub, job_id) == events


async def test_a_late_subscriber_gets_the_history_then_the_rest_live(
    start_server: StartServer, short_bytes: bytes
) -> None:
    engine = FakeEngine(block=True)
    server = await start_server(engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        await wait_for_event(stub, job_id, "thinking")  # the job is held there
        call = stub.StreamAnalysisEvents(
            pb.StreamAnalysisEventsRequest(job_id=job_id, after_sequence=0)
        )
        seen: list[pb.StreamAnalysisEventsResponse] = []
        async for event in call:
            seen.append(event)
            if len(seen) == 7:
                # The replay: every event so far, in order, while the job waits on the model.
                assert kinds(seen) == ["progress"] * 6 + ["thinking"]
                assert [e.sequence for e in seen] == list(range(1, 8))
                job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
                assert (job.state, job.percent) == (pb.JOB_STATE_RUNNING, 75)
                engine.release()
        stored = await events_of(stub, job_id)
    # The rest came live on the same stream, numbered on from the replay: no gap, no repeat.
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    assert kinds(seen)[7:] == ["progress", "complete"]
    assert seen[7].progress.percent == 100
    assert seen == stored


async def test_chat_answers_while_the_job_is_still_running(
    start_server: StartServer, short_bytes: bytes
) -> None:
    # The summary waits on the model; the chat answer does not.
    engine = FakeEngine(block=True, chat_text="Someone is there at [00:02].")
    server = await start_server(engine=engine)
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        extracted = await wait_for_event(stub, job_id, "progress", percent=50)
        assert extracted.progress.message.startswith("Extracted 3 frames")
        answer = [
            r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="Who is there?"))
        ]
        *deltas, final = answer
        assert len(deltas) >= 2
        assert final.done
        assert final.text == "".join(r.delta for r in deltas)
        assert list(final.cited_times_s) == [2.0]
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        assert job.state == pb.JOB_STATE_RUNNING
        assert not job.HasField("result")
        # Asked from the sampled frames: all three shown, no summary yet.
        (chat,) = [r for r in engine.requests if is_chat(r)]
        assert len(chat.images) == 3
        assert "Summary of the video written earlier" not in chat.prompt
        await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))


async def test_jobs_wait_in_a_fifo_queue_and_can_be_cancelled_there(
    start_server: StartServer, short_bytes: bytes
) -> None:
    server = await start_server(engine=FakeEngine(block=True))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        first = (await stub.StartAnalysis(start)).job
        second = (await stub.StartAnalysis(start)).job
        third = (await stub.StartAnalysis(start)).job
        assert (second.state, second.queue_position) == (pb.JOB_STATE_QUEUED, 1)
        assert (third.state, third.queue_position) == (pb.JOB_STATE_QUEUED, 2)

        # Cancelling the second moves the third up, and tells its followers so.
        await stub.CancelJob(pb.CancelJobRequest(job_id=second.id))
        third_now = (await stub.GetJob(pb.GetJobRequest(job_id=third.id))).job
        assert third_now.queue_position == 1
        listed = (await stub.ListJobs(pb.ListJobsRequest(state=pb.JOB_STATE_QUEUED))).jobs
        assert [(j.id, j.queue_position) for j in listed] == [(third.id, 1)]

        second_events = await events_of(stub, second.id)
        assert kinds(second_events) == ["progress", "error"]
        assert second_events[0].progress.stage == pb.STAGE_QUEUED
        assert second_events[0].progress.queue_position == 1
        assert second_events[1].error.code == "CANCELLED"

        # The running job finishing lets the queued one start.
        await stub.CancelJob(pb.CancelJobRequest(job_id=first.id))
        await wait_for_event(stub, third.id, "thinking")
        third_events = await events_of_until(stub, third.id, 4)
        positions = [e.progress.queue_position for e in third_events[:2]]
        assert positions == [2, 1]
        assert third_events[2].progress.stage == pb.STAGE_INITIALIZING
        await stub.CancelJob(pb.CancelJobRequest(job_id=third.id))


async def events_of_until(
    stub: Stub, job_id: str, count: int
) -> list[pb.StreamAnalysisEventsResponse]:
    call = stub.StreamAnalysisEvents(pb.StreamAnalysisEventsRequest(job_id=job_id))
    events = []
    async for event in call:
        events.append(event)
        if len(events) == count:
            call.cancel()
            break
    return events


async def test_a_subscriber_leaving_does_not_cancel_the_job(
    start_server: StartServer, short_bytes: bytes
) -> None:
    server = await start_server(engine=FakeEngine(block=True))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        await wait_for_event(stub, job_id, "thinking")  # leaves the stream
        await asyncio.sleep(0.2)
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        assert job.state == pb.JOB_STATE_RUNNING
        assert (job.stage, job.percent) == (pb.STAGE_INFERENCE, 75)
        await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_restart_runs_interrupted_jobs_again_from_the_start(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    first = await start_server(
        settings.model_copy(update={"max_queued_jobs": 4}), engine=FakeEngine(block=True)
    )
    async with connect(first) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        running = (await stub.StartAnalysis(start)).job
        queued = (await stub.StartAnalysis(start)).job
        await wait_for_event(stub, running.id, "thinking")
        before = await events_of_until(stub, running.id, 7)
    await first.stop(0)

    # The restarted service has no model: the jobs now run to the end without one.
    second = await start_server()
    async with connect(second) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        events = await events_of(stub, running.id)
        job = (await stub.GetJob(pb.GetJobRequest(job_id=running.id))).job
        assert job.state == pb.JOB_STATE_SUCCEEDED
        assert job.attempts == 2
        assert events[:7] == before
        assert kinds(before)[-1] == "thinking"
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert kinds(events).count("complete") == 1
        assert kinds(events)[-1] == "complete"
        again = events[7].progress
        assert (again.stage, again.percent) == (pb.STAGE_QUEUED, 0)
        assert "The analyzer running this job stopped" in again.message
        assert "attempt 2 of 3" in again.message
        assert events[8].progress.message == "Starting video analysis..."
        assert events[-1].complete.result.frames

        # The queued job waited in the shared queue, untouched, and ran once.
        queued_events = await events_of(stub, queued.id)
        assert queued_events[0].progress.queue_position == 1
        assert queued_events[1].progress.message == "Starting video analysis..."
        assert kinds(queued_events)[-1] == "complete"
        assert (await stub.GetJob(pb.GetJobRequest(job_id=queued.id))).job.attempts == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_job_interrupted_too_often_fails_with_a_retryable_error(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    once = settings.model_copy(update={"max_attempts": 1})
    first = await start_server(once, engine=FakeEngine(block=True))
    async with connect(first) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        running = (await stub.StartAnalysis(start)).job
        await wait_for_event(stub, running.id, "thinking")
        before = await events_of_until(stub, running.id, 7)
    await first.stop(0)

    second = await start_server(once)
    async with connect(second) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job = (await stub.GetJob(pb.GetJobRequest(job_id=running.id))).job
        assert job.state == pb.JOB_STATE_FAILED
        assert job.error.code == "INTERRUPTED"
        assert job.error.retryable
        assert "running" in job.error.message
        events = await events_of(stub, running.id)
        assert events[:7] == before
        assert events[-1].error == job.error
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        # The video is still there to analyse again.
        retry = (await stub.StartAnalysis(pb.StartAnalysisRequest(video_id=video.id))).job
        assert kinds(await events_of(stub, retry.id))[-1] == "complete"


async def test_a_full_queue_refuses_new_jobs(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    server = await start_server(
        settings.model_copy(update={"max_queued_jobs": 1}), engine=FakeEngine(block=True)
    )
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        video = (await upload(stub, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        running = (await stub.StartAnalysis(start)).job
        queued = (await stub.StartAnalysis(start)).job
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StartAnalysis(start)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "OVERLOADED" in (caught.value.details() or "")
        for job in (queued, running):
            await stub.CancelJob(pb.CancelJobRequest(job_id=job.id))


async def test_list_jobs_pages_newest_first(stub: Stub, short_bytes: bytes) -> None:
    video = (await upload(stub, short_bytes, start=False)).video
    ids = [
        (await stub.StartAnalysis(pb.StartAnalysisRequest(video_id=video.id))).job.id
        for _ in range(3)
    ]
    page = await stub.ListJobs(pb.ListJobsRequest(page_size=2))
    assert [j.id for j in page.jobs] == ids[:0:-1]
    rest = await stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=page.next_page_token))
    assert ([j.id for j in rest.jobs], rest.next_page_token) == ([ids[0]], "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListJobs(pb.ListJobsRequest(page_token="bogus"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_decoder_that_hangs_fails_only_its_job(
    start_server: StartServer, settings: AnalyzerSettings, short_bytes: bytes
) -> None:
    server = await start_server(settings.model_copy(update={"sampling_timeout_s": 0.001}))
    async with connect(server) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes)).job.id
        events = await events_of(stub, job_id)
        assert events[-1].error.code == "DECODER_TIMEOUT"
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        assert job.state == pb.JOB_STATE_FAILED
        # The killed child is replaced: the service goes on probing uploads.
        again = await upload(stub, short_bytes, start=False)
        assert again.video.frame_count == 150
