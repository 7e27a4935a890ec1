"""The analyzer on PostgreSQL (VIGIL_ANALYZER_DATABASE_URL): tables made once by versioned
migrations, a clear refusal when the database cannot be used, the password never shown, and the
service running analyses and chat with its history in the database, where a second analyzer on
the same database finds it."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import signal
import subprocess
import sys

import psycopg
import pytest

from analyzer_service.postgres_store import PostgresJobStore
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import StoreUnavailable
from analyzer_service.stores import open_store
from tests.analyzer_service.helpers import (
    FakeEngine,
    StartServer,
    connect,
    events_of,
    kinds,
    upload,
)
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc
from vigil.devtools.postgres import PostgresServer, running_postgres

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = pb.AnalysisOptions(sampling_policy=pb.SAMPLING_POLICY_SEED)


def nowhere(unreachable_detector: str, password: str = "canary-pw-4711") -> str:
    """A database URL whose port refuses connections (a port held bound, never listening)."""
    return f"postgresql://vigil:{password}@{unreachable_detector}/vigil"


def service_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """The environment of ``python -m analyzer_service`` on a free port with no detector."""
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}",
        "VIGIL_ANALYZER_DATA_DIR": str(tmp_path / "data"),
        "VIGIL_ANALYZER_PORT": "0",
        "VIGIL_ANALYZER_DETECTION_PASS": "false",
        "VIGIL_ANALYZER_MEDIA_WORKERS": "1",
    }


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


async def test_replicas_opening_at_once_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(PostgresJobStore.open(postgres_url) for _ in range(4)))
    for store in stores:
        await store.close()
    versions = rows(postgres_url, "SELECT version FROM analyzer_schema ORDER BY version")
    assert [v for (v,) in versions] == [1, 2]
    tables = rows(
        postgres_url,
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'analyzer_%' ORDER BY tablename",
    )
    assert [t for (t,) in tables] == [
        "analyzer_chat_turns",
        "analyzer_counters",
        "analyzer_events",
        "analyzer_jobs",
        "analyzer_schema",
        "analyzer_videos",
    ]


async def test_tables_of_a_newer_analyzer_are_refused(postgres_url: str) -> None:
    await (await PostgresJobStore.open(postgres_url)).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO analyzer_schema (version) VALUES (3)")
    with pytest.raises(StoreUnavailable, match="version 3, newer than this analyzer's 2"):
        await PostgresJobStore.open(postgres_url)


async def test_an_unreachable_database_is_named_without_its_password(
    unreachable_detector: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = AnalyzerSettings(port=0, database_url=nowhere(unreachable_detector))
    with pytest.raises(StoreUnavailable) as refused:
        await open_store(settings)
    message = str(refused.value)
    assert message.startswith(f"cannot connect to PostgreSQL at {unreachable_detector} (")
    assert "refused" in message
    assert "canary-pw-4711" not in message + caplog.text + repr(settings)


async def test_a_wrong_password_is_named_as_such_and_not_shown(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://vigil:wrong-canary-pw@{postgres.host}:{postgres.port}/postgres"
    with pytest.raises(StoreUnavailable, match="password authentication failed") as refused:
        await PostgresJobStore.open(url)
    assert f"{postgres.host}:{postgres.port}" in str(refused.value)
    assert "wrong-canary-pw" not in str(refused.value) + caplog.text


async def test_a_url_of_another_kind_is_refused_masked() -> None:
    settings = AnalyzerSettings(port=0, database_url="mysql://vigil:canary@db/vigil")
    with pytest.raises(StoreUnavailable, match="must start with postgresql://") as refused:
        await open_store(settings)
    assert "mysql://vigil:***@db/vigil" in str(refused.value)
    assert "canary" not in str(refused.value)


def test_the_service_will_not_start_without_its_database(
    unreachable_detector: str, tmp_path: pathlib.Path
) -> None:
    """One line naming host and port, no traceback, no password; exit status 1."""
    env = {
        **service_env(tmp_path),
        "VIGIL_ANALYZER_DATABASE_URL": nowhere(unreachable_detector),
        "VIGIL_ANALYZER_DATABASE_CONNECT_TIMEOUT_S": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "analyzer_service"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"analyzer service cannot start: cannot connect to PostgreSQL at {unreachable_detector} ("
    )
    assert "Traceback" not in done.stderr
    assert "canary-pw-4711" not in done.stdout + done.stderr


def test_the_service_runs_on_postgres_and_logs_its_url_masked(
    postgres_url: str, tmp_path: pathlib.Path
) -> None:
    """The real process (uvloop): starts on the database, says where its jobs are kept without
    the password, and stops on SIGTERM with status 0."""
    env = {
        **service_env(tmp_path),
        "VIGIL_ANALYZER_DATABASE_URL": postgres_url,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer_service"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    said = []
    for line in process.stdout:
        said.append(line)
        if "analyzer listening on" in line:
            break
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    said.append(rest)
    output = "".join(said)
    assert process.returncode == 0, output
    assert "jobs kept in postgresql://vigil:***@127.0.0.1:" in output
    password = postgres_url.partition("://vigil:")[2].partition("@")[0]
    assert password not in output


async def test_analyses_and_chat_run_on_postgres_and_another_analyzer_sees_them(
    start_server: StartServer,
    settings: AnalyzerSettings,
    postgres_url: str,
    short_bytes: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("VIGIL_ANALYZER_DATABASE_URL", postgres_url)
    # The environment names the database; the test's settings the rest.
    on_postgres = AnalyzerSettings(**settings.model_dump(exclude={"database_url"}))
    assert on_postgres.database_url.get_secret_value() == postgres_url
    first = await start_server(on_postgres, engine=FakeEngine(chat_text="Nobody at [00:01]."))
    async with connect(first) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        job_id = (await upload(stub, short_bytes, options=SEED)).job.id
        events = await events_of(stub, job_id)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert kinds(events)[-1] == "complete"
        assert events[-1].complete.result.summary.strip() == "A person walks in at [00:02]."
        answer = [r async for r in stub.Chat(pb.ChatRequest(job_id=job_id, question="Who?"))]
        assert answer[-1].done
    # Everything is in PostgreSQL, nothing in the SQLite file.
    assert not on_postgres.database.exists()
    assert rows(postgres_url, "SELECT count(*) FROM analyzer_events") == [(len(events),)]
    assert rows(postgres_url, "SELECT state FROM analyzer_jobs") == [(pb.JOB_STATE_SUCCEEDED,)]

    # A second analyzer on the same database (and data directory): the job, its history and its
    # conversation, as the first has them.
    second = await start_server(on_postgres)
    async with connect(second) as channel:
        stub = pb_grpc.AnalyzerServiceStub(channel)
        assert await events_of(stub, job_id) == events
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        assert job.state == pb.JOB_STATE_SUCCEEDED
        listed = await stub.ListJobs(pb.ListJobsRequest(page_size=10))
        assert [j.id for j in listed.jobs] == [job_id]
    (turn,) = await second.store.chat_turns(job_id)
    assert (turn.question, turn.answer, turn.cited_times_s) == ("Who?", answer[-1].text, (1.0,))
    assert turn == (await first.store.chat_turns(job_id))[0]

    password = postgres_url.partition("://vigil:")[2].partition("@")[0]
    assert "jobs kept in postgresql://vigil:***@127.0.0.1:" in caplog.text
    assert password not in caplog.text
    assert password not in repr(on_postgres)


async def test_the_store_carries_on_when_the_database_restarts() -> None:
    """Connections cut by a restart are replaced before use: no call fails after it."""
    with running_postgres() as server:
        url = server.create_database()
        store = await PostgresJobStore.open(url, pool_size=2)
        try:
            await store.create_job(pb.Job(id="j1", state=pb.JOB_STATE_RUNNING))
            await store.append_event(pb.StreamAnalysisEventsResponse(job_id="j1"))
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            event = pb.StreamAnalysisEventsResponse(job_id="j1")
            assert (await store.append_event(event)).sequence == 2
            assert [j.id for j in await store.unfinished_jobs()] == ["j1"]
        finally:
            await store.close()
