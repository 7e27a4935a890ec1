"""Analyzer replicas on one PostgreSQL database: one shared queue with leases, each job run once,
followed from any replica with one gap-free history, taken over when its replica dies or stalls,
with the stalled replica's late writes refused."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from pydantic import SecretStr

from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import Lease, Renewal
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    Stub,
    connect,
    events_of,
    kinds,
    upload,
    wait_for_event,
)
from tests.analyzer_service.test_postgres import rows, service_env
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc

SEED = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)
Events = list[pb.StreamAnalysisEventsResponse]


@pytest.fixture
def replica(settings: AnalyzerSettings, postgres_url: str) -> AnalyzerSettings:
    """Settings of replica "a" on the test's database; short leases."""
    return settings.model_copy(
        update={
            "database_url": SecretStr(postgres_url),
            "replica_id": "a",
            "lease_s": 2.0,
            "lease_renew_s": 0.25,
            "max_queued_jobs": 8,
        }
    )


def named(settings: AnalyzerSettings, name: str, **update: object) -> AnalyzerSettings:
    return settings.model_copy(update={"replica_id": name, **update})


def owners(url: str) -> dict[str, object]:
    return {
        str(job_id): owner for job_id, owner in rows(url, "SELECT id, owner FROM analyzer_jobs")
    }


def assert_one_history(events: Events) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [k for k in kinds(events) if k in ("complete", "error")] == [kinds(events)[-1]]


async def state_of(stub: Stub, job_id: str) -> pb.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


async def test_replicas_share_one_queue_and_follow_each_others_jobs_live(
    replica: AnalyzerSettings, start_server: StartServer, short_bytes: bytes, postgres_url: str
) -> None:
    engine_a, engine_b = FakeEngine(block=True), FakeEngine(block=True)
    a = await start_server(replica, engine=engine_a)
    b = await start_server(named(replica, "b"), engine=engine_b)
    async with connect(a) as channel_a, connect(b) as channel_b:
        stub_a, stub_b = (
            pb_grpc.AnalyzerServiceStub(channel_a),
            pb_grpc.AnalyzerServiceStub(channel_b),
        )
        video = (await upload(stub_a, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        first = (await stub_a.StartAnalysis(start)).job
        await wait_for_event(stub_b, first.id, "thinking")
        # A runs one job at a time: B takes the second, told by PostgreSQL.
        second = (await stub_a.StartAnalysis(start)).job
        await wait_for_event(stub_a, second.id, "thinking")
        # A replica starting now takes neither: their leases are live.
        late = await start_server(named(replica, "c"), engine=FakeEngine())
        assert late.jobs.counts()["running"] == 0
        assert owners(postgres_url) == {first.id: "a", second.id: "b"}
        await late.stop(0)
        third = (await stub_b.StartAnalysis(start)).job
        assert (third.state, third.queue_position) == (pb.JOB_STATE_QUEUED, 1)
        assert (await state_of(stub_a, third.id)).queue_position == 1
        assert owners(postgres_url) == {first.id: "a", second.id: "b", third.id: None}
        assert (a.jobs.counts()["running"], b.jobs.counts()["running"]) == (1, 1)

        # Followed on B, A's job streams its history, then the rest live as A writes it.
        call = stub_b.StreamAnalysisEvents(pb.StreamAnalysisEventsRequest(job_id=first.id))
        seen: Events = []
        async for event in call:
            seen.append(event)
            if event.HasField("thinking"):
                engine_a.release()
        assert kinds(seen)[-2:] == ["progress", "complete"]
        assert seen == await events_of(stub_a, first.id)
        assert_one_history(seen)
        assert len(engine_a.requests) == 1
        assert len(engine_b.requests) == 1

        # Chat about A's job through B: the frames and the conversation are shared.
        question = pb.ChatRequest(job_id=first.id, question="Who came in?")
        answer = [r async for r in stub_b.Chat(question)]
        assert answer[-1].done
        assert [t.question for t in await a.store.chat_turns(first.id)] == ["Who came in?"]

        # A, free again, takes the third job; B's job is cancelled through A.
        await wait_for_event(stub_b, third.id, "complete")
        assert owners(postgres_url)[third.id] == "a"
        cancelled = (await stub_a.CancelJob(pb.CancelJobRequest(job_id=second.id))).job
        assert (cancelled.state, cancelled.error.code) == (pb.JOB_STATE_CANCELLED, "CANCELLED")
        assert engine_b.aborted == [second.id]
        for job in (first, second, third):
            history = await events_of(stub_b, job.id)
            assert history == await events_of(stub_a, job.id)
            assert_one_history(history)
            assert (await state_of(stub_b, job.id)).attempts == 1


async def test_a_stalled_replica_loses_its_job_and_its_late_writes_are_refused(
    replica: AnalyzerSettings,
    start_server: StartServer,
    short_bytes: bytes,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="analyzer_service.jobs")
    engine_a = FakeEngine(block=True)
    a = await start_server(replica, engine=engine_a)
    stalled = asyncio.Event()

    async def held(lease: Lease, *, lease_s: float) -> Renewal:
        # A's renewals stop, as a replica's do when its machine stalls.
        stalled.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with connect(a) as channel_a:
        stub_a = pb_grpc.AnalyzerServiceStub(channel_a)
        job_id = (await upload(stub_a, short_bytes, options=SEED)).job.id
        await wait_for_event(stub_a, job_id, "thinking")
        monkeypatch.setattr(a.store, "renew", held)
        await stalled.wait()
        b = await start_server(named(replica, "b"), engine=FakeEngine())
        async with connect(b) as channel_b:
            stub_b = pb_grpc.AnalyzerServiceStub(channel_b)
            history = await events_of(stub_b, job_id)
            job = await state_of(stub_b, job_id)
            assert (job.state, job.attempts) == (pb.JOB_STATE_SUCCEEDED, 2)
            assert owners(postgres_url)[job_id] == "b"
            # A wakes: its summary arrives and its next write is refused.
            engine_a.release()
            while job_id in a.jobs._running:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            assert "lease lost; its writes are refused" in caplog.text
            assert await events_of(stub_b, job_id) == history
    assert_one_history(history)
    again = next(e for e in history if "attempt 2 of 3" in e.progress.message)
    assert kinds(history[: history.index(again)])[-1] == "thinking"
    assert history[-1].complete.result.summary.strip() == "A person walks in at [00:02]."


class Hanging(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A detector that takes every call and never answers: a job held at 40%."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        async def hang(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
            await asyncio.Event().wait()
            yield b""

        return grpc.stream_stream_rpc_method_handler(hang)


@pytest.fixture
async def hanging_detector() -> AsyncIterator[str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([Hanging()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_a_killed_replicas_job_is_taken_over_with_one_history(
    replica: AnalyzerSettings,
    start_server: StartServer,
    short_bytes: bytes,
    postgres_url: str,
    hanging_detector: str,
    tmp_path: pytest.TempPathFactory,
) -> None:
    """Replica A, a real process, runs a job and is SIGKILLed mid-job; B, following it, sees B
    take it over once A's lease expires and run it to the end: attempt 2, one gap-free history."""
    env = {
        **service_env(tmp_path),  # type: ignore[arg-type]
        "VIGIL_ANALYZER_DATA_DIR": str(replica.data_dir),
        "VIGIL_ANALYZER_DATABASE_URL": postgres_url,
        "VIGIL_ANALYZER_REPLICA_ID": "a",
        "VIGIL_ANALYZER_LEASE_S": "2",
        "VIGIL_ANALYZER_LEASE_RENEW_S": "0.25",
        "VIGIL_ANALYZER_DETECTION_PASS": "true",
        "VIGIL_ANALYZER_DETECTOR_ADDRESS": hanging_detector,
    }
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "analyzer_service"],
        env=env,
        cwd=replica.data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = None
        for line in process.stdout:
            if found := re.search(r"analyzer listening on [\d.]+:(\d+)", line):
                port = int(found.group(1))
                break
        assert port is not None, "replica A did not start"
        b = await start_server(named(replica, "b", detection_pass=False))
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel_a,
            connect(b) as channel_b,
        ):
            stub_a, stub_b = (
                pb_grpc.AnalyzerServiceStub(channel_a),
                pb_grpc.AnalyzerServiceStub(channel_b),
            )
            job_id = (await upload(stub_a, short_bytes, options=SEED)).job.id
            held = await wait_for_event(stub_b, job_id, "progress", percent=40)
            assert held.progress.stage == pb.STAGE_DETECTING
            follower = asyncio.create_task(events_of(stub_b, job_id))
            process.kill()
            process.wait(timeout=30)
            followed = await asyncio.wait_for(follower, 120)
            job = await state_of(stub_b, job_id)
            stored = await events_of(stub_b, job_id)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert followed == stored
    assert_one_history(stored)
    assert (job.state, job.attempts) == (pb.JOB_STATE_SUCCEEDED, 2)
    assert owners(postgres_url)[job_id] == "b"
    percents = [e.progress.percent for e in stored if e.HasField("progress")]
    assert percents == [10, 25, 40, 0, 10, 25, 50, 75, 100]
    assert "attempt 2 of 3" in stored[3].progress.message
