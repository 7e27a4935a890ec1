"""The SQLite job store: gap-free sequences, atomic state with events, paging, persistence."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator

import pytest

from analyzer_service.sqlite_store import SQLiteJobStore
from analyzer_service.store import ChatTurn, Event, JobStore
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SQLiteJobStore]:
    opened = await SQLiteJobStore.open(tmp_path / "db" / "jobs.sqlite3")
    yield opened
    await opened.close()


def job(job_id: str, state: pb.JobState.ValueType = pb.JOB_STATE_QUEUED) -> pb.Job:
    return pb.Job(id=job_id, video=pb.Video(id="v1"), state=state)


def progress(percent: float) -> Event:
    return Event(job_id="j1", progress=pb.AnalysisProgress(percent=percent))


async def test_satisfies_the_protocol(store: SQLiteJobStore) -> None:
    as_protocol: JobStore = store
    await as_protocol.create_video(pb.Video(id="v1", name="a.mp4"))
    assert await as_protocol.get_video("v1") == pb.Video(id="v1", name="a.mp4")
    assert await as_protocol.get_video("nope") is None
    assert await as_protocol.get_job("nope") is None


async def test_concurrent_appends_get_sequences_1_to_n(store: SQLiteJobStore) -> None:
    await store.create_job(job("j1"))
    await store.create_job(job("j2"))
    stored = await asyncio.gather(
        *(store.append_event(progress(i)) for i in range(50)),
        store.append_event(Event(job_id="j2", progress=pb.AnalysisProgress())),
    )
    assert sorted(e.sequence for e in stored[:50]) == list(range(1, 51))
    assert stored[50].sequence == 1
    # Appends run in the order they were made.
    assert [e.progress.percent for e in stored[:50]] == list(range(50))
    listed = await store.list_events("j1", 0, 1000)
    assert [e.sequence for e in listed] == list(range(1, 51))
    assert all(e.HasField("time") for e in listed)
    assert [e.sequence for e in await store.list_events("j1", 47, 1000)] == [48, 49, 50]
    assert [e.sequence for e in await store.list_events("j1", 10, 2)] == [11, 12]


async def test_an_event_and_its_job_are_saved_together(store: SQLiteJobStore) -> None:
    await store.create_job(job("j1"))
    failed = job("j1", pb.JOB_STATE_FAILED)
    failed.error.CopyFrom(common_pb2.Error(code="X"))
    event = await store.append_event(Event(job_id="j1", error=failed.error), job=failed)
    assert event.sequence == 1
    saved = await store.get_job("j1")
    assert saved is not None
    assert saved.state == pb.JOB_STATE_FAILED
    assert saved.error.code == "X"


async def test_a_failed_job_update_stores_no_event(store: SQLiteJobStore) -> None:
    with pytest.raises(KeyError):
        await store.append_event(progress(10), job=job("missing"))
    assert await store.list_events("j1", 0, 10) == []


async def test_pages_newest_first_filtered_by_state(store: SQLiteJobStore) -> None:
    for n in range(5):
        state = pb.JOB_STATE_FAILED if n % 2 else pb.JOB_STATE_QUEUED
        await store.create_job(job(f"j{n}", state))
    page, token = await store.list_jobs(page_size=2, page_token="", state=pb.JOB_STATE_UNSPECIFIED)
    assert [j.id for j in page] == ["j4", "j3"]
    page, token = await store.list_jobs(
        page_size=2, page_token=token, state=pb.JOB_STATE_UNSPECIFIED
    )
    assert [j.id for j in page] == ["j2", "j1"]
    page, token = await store.list_jobs(
        page_size=2, page_token=token, state=pb.JOB_STATE_UNSPECIFIED
    )
    assert ([j.id for j in page], token) == (["j0"], "")
    page, token = await store.list_jobs(page_size=10, page_token="", state=pb.JOB_STATE_FAILED)
    assert ([j.id for j in page], token) == (["j3", "j1"], "")


@pytest.mark.parametrize("token", ["garbage!", "bm9wZTox", "am9iczp4"])
async def test_a_foreign_page_token_is_refused(store: SQLiteJobStore, token: str) -> None:
    with pytest.raises(ValueError, match="page token"):
        await store.list_jobs(page_size=2, page_token=token, state=pb.JOB_STATE_UNSPECIFIED)


async def test_records_survive_reopening(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = await SQLiteJobStore.open(path)
    await first.create_job(job("a", pb.JOB_STATE_RUNNING))
    await first.create_job(job("b", pb.JOB_STATE_SUCCEEDED))
    await first.create_job(job("c", pb.JOB_STATE_QUEUED))
    await first.append_event(Event(job_id="a"))
    await first.close()
    second = await SQLiteJobStore.open(path)
    try:
        assert [j.id for j in await second.unfinished_jobs()] == ["a", "c"]
        assert (await second.append_event(Event(job_id="a"))).sequence == 2
    finally:
        await second.close()


async def test_chat_turns_are_kept_in_order_per_job_and_on_disk(
    store: SQLiteJobStore, tmp_path: pathlib.Path
) -> None:
    turns = [
        ChatTurn("Who came in?", "A person at [00:02].", (2.0,), 7, 1.0),
        ChatTurn("And then?", "They left.", (), 3, 2.0),
        ChatTurn("Anything else?", "No.", (), 2, 3.0),
    ]
    await asyncio.gather(*(store.append_chat_turn("j1", t) for t in turns))
    await store.append_chat_turn("j2", ChatTurn("Other job?", "Yes.", (), 1, 4.0))
    assert await store.chat_turns("j1") == turns
    assert await store.chat_turns("j1", last=2) == turns[1:]
    assert await store.chat_turns("j1", last=0) == []
    assert [t.question for t in await store.chat_turns("j2")] == ["Other job?"]
    assert await store.chat_turns("nope") == []
    reopened = await SQLiteJobStore.open(tmp_path / "db" / "jobs.sqlite3")
    try:
        assert await reopened.chat_turns("j1") == turns
    finally:
        await reopened.close()
