"""Analyzer replicas across a PostgreSQL restart: calls made while it is down are refused as
retryable (UNAVAILABLE), jobs running or queued across it complete once, each with one gap-free
history, and followers that started before it see every event."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from pydantic import SecretStr

from analyzer_service.settings import AnalyzerSettings
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
from tests.analyzer_service.test_postgres import rows
from tests.analyzer_service.test_replicas import SEED, Events
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.devtools.postgres import PostgresServer


def replica(settings: AnalyzerSettings, url: str, name: str) -> AnalyzerSettings:
    # Leases long enough to outlast the restart: no job changes hands because of it.
    return settings.model_copy(
        update={
            "database_url": SecretStr(url),
            "database_connect_timeout_s": 2.0,
            "replica_id": name,
            "lease_s": 30.0,
            "lease_renew_s": 0.5,
        }
    )


async def follow(stub: Stub, job_id: str, started: asyncio.Event) -> Events:
    request = pb.StreamAnalysisEventsRequest(job_id=job_id)
    events = []
    async for event in stub.StreamAnalysisEvents(request):
        events.append(event)
        started.set()
    return events


def assert_one_history(events: Events) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [k for k in kinds(events) if k in ("complete", "error")] == ["complete"]
    assert kinds(events)[-1] == "complete"


async def test_jobs_and_followers_ride_out_a_postgres_restart(
    settings: AnalyzerSettings,
    start_server: StartServer,
    short_bytes: bytes,
    postgres: PostgresServer,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="analyzer_service")
    engine_a, engine_b = FakeEngine(block=True), FakeEngine(block=True)
    a = await start_server(replica(settings, postgres_url, "a"), engine=engine_a)
    b = await start_server(replica(settings, postgres_url, "b"), engine=engine_b)
    async with connect(a) as channel_a, connect(b) as channel_b:
        stub_a, stub_b = (
            pb_grpc.AnalyzerServiceStub(channel_a),
            pb_grpc.AnalyzerServiceStub(channel_b),
        )
        video = (await upload(stub_a, short_bytes, start=False)).video
        start = pb.StartAnalysisRequest(video_id=video.id, options=SEED)
        first = (await stub_a.StartAnalysis(start)).job
        await wait_for_event(stub_b, first.id, "thinking")
        second = (await stub_a.StartAnalysis(start)).job
        await wait_for_event(stub_a, second.id, "thinking")
        third = (await stub_a.StartAnalysis(start)).job
        assert third.state == pb.JOB_STATE_QUEUED
        # Followers on the replica that does not run the job: their live part comes through
        # PostgreSQL's LISTEN, whose connection the restart cuts.
        started = asyncio.Event(), asyncio.Event()
        followers = {
            first.id: asyncio.create_task(follow(stub_b, first.id, started[0])),
            second.id: asyncio.create_task(follow(stub_a, second.id, started[1])),
        }
        await asyncio.gather(*(s.wait() for s in started))

        await asyncio.to_thread(postgres.stop)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub_a.GetJob(pb.GetJobRequest(job_id=first.id))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert postgres.password not in (refused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub_b.StartAnalysis(start)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            # A's job goes on while the database is down: its events wait to be stored.
            engine_a.release()
        finally:
            await asyncio.to_thread(postgres.start)
        engine_b.release()

        seen = {job_id: await task for job_id, task in followers.items()}
        await wait_for_event(stub_b, third.id, "complete")
        for job in (first, second, third):
            history = await events_of(stub_a, job.id)
            assert history == await events_of(stub_b, job.id)
            assert_one_history(history)
            if job.id in seen:
                assert seen[job.id] == history
            done = (await stub_b.GetJob(pb.GetJobRequest(job_id=job.id))).job
            assert (done.state, done.attempts) == (pb.JOB_STATE_SUCCEEDED, 1)
        # After the restart, new calls work as before.
        again = (await stub_b.StartAnalysis(start)).job
        await wait_for_event(stub_a, again.id, "complete")
    assert rows(postgres_url, "SELECT count(*) FROM analyzer_jobs") == [(4,)]
    # A's job waited for the database (counted for operators), then went on.
    waits = a.jobs.metrics.registry.get_sample_value("vigil_analyzer_database_waits_total")
    assert (waits or 0) >= 1
    assert postgres.password not in caplog.text
    assert "listening for other replicas again" in caplog.text
