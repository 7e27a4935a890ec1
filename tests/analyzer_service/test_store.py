"""The job store contract, run against both stores: SQLite in a file, and PostgreSQL (a real
server, one fresh database per test): gap-free sequences, atomic state with events, paging,
persistence, chat turns, and two stores (two replicas) on one database at once."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from analyzer_service.postgres_store import PostgresJobStore
from analyzer_service.sqlite_store import SQLiteJobStore
from analyzer_service.store import ChatTurn, Event, JobStore, Lease, LeaseLost, Renewal
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.common.v1 import common_pb2


class Stores:
    """Opens stores on one database (or file), as replicas or restarts would; closes them all."""

    def __init__(self, kind: str, make: Callable[[], Awaitable[JobStore]]) -> None:
        self.kind = kind
        self._make = make
        self._open: list[JobStore] = []

    async def open(self) -> JobStore:
        store = await self._make()
        self._open.append(store)
        return store

    async def close(self, store: JobStore) -> None:
        self._open.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Stores]:
    make: Callable[[], Awaitable[JobStore]]
    if request.param == "sqlite":
        path = tmp_path / "db" / "jobs.sqlite3"

        async def make() -> JobStore:
            return await SQLiteJobStore.open(path)

    else:
        url: str = request.getfixturevalue("postgres_url")

        async def make() -> JobStore:
            return await PostgresJobStore.open(url, pool_size=4)

    opened = Stores(request.param, make)
    yield opened
    await opened.close_all()


@pytest.fixture
async def store(stores: Stores) -> JobStore:
    return await stores.open()


def job(job_id: str, state: pb.JobState.ValueType = pb.JOB_STATE_QUEUED) -> pb.Job:
    return pb.Job(id=job_id, video=pb.Video(id="v1"), state=state)


def progress(percent: float, job_id: str = "j1") -> Event:
    return Event(job_id=job_id, progress=pb.AnalysisProgress(percent=percent))


async def test_videos_and_jobs_are_found_by_id(store: JobStore) -> None:
    await store.create_video(pb.Video(id="v1", name="a.mp4"))
    assert await store.get_video("v1") == pb.Video(id="v1", name="a.mp4")
    assert await store.get_video("nope") is None
    await store.create_job(job("j1"))
    assert await store.get_job("j1") == job("j1")
    assert await store.get_job("nope") is None


async def test_a_jobs_recording_range_is_kept_through_updates_and_claims(
    store: JobStore,
) -> None:
    recording = pb.RecordingRange(source_id="gate")
    recording.start.FromSeconds(1_700_000_000)
    recording.end.FromSeconds(1_700_007_200)
    await store.create_job(
        pb.Job(id="j1", video=pb.Video(id="v1"), state=pb.JOB_STATE_QUEUED, recording=recording)
    )
    [lease] = await store.claim("replica-a", lease_s=30, limit=1)
    assert lease.job.recording == recording
    lease.job.state = pb.JOB_STATE_RUNNING
    await store.update_job(lease.job, lease=lease)
    stored = await store.get_job("j1")
    assert stored is not None
    assert stored.recording == recording
    [listed], _ = await store.list_jobs(page_size=5, page_token="", state=pb.JOB_STATE_UNSPECIFIED)
    assert listed.recording == recording


async def test_concurrent_appends_get_sequences_1_to_n(store: JobStore) -> None:
    await store.create_job(job("j1"))
    await store.create_job(job("j2"))
    stored = await asyncio.gather(
        *(store.append_event(progress(i)) for i in range(50)),
        store.append_event(progress(0, "j2")),
    )
    assert sorted(e.sequence for e in stored[:50]) == list(range(1, 51))
    assert stored[50].sequence == 1
    # Appends run in the order they were made.
    assert [e.progress.percent for e in stored[:50]] == list(range(50))
    listed = await store.list_events("j1", 0, 1000)
    assert listed == stored[:50]
    assert [e.sequence for e in listed] == list(range(1, 51))
    assert all(e.HasField("time") for e in listed)
    assert [e.sequence for e in await store.list_events("j1", 47, 1000)] == [48, 49, 50]
    assert [e.sequence for e in await store.list_events("j1", 10, 2)] == [11, 12]


async def test_an_events_own_time_is_kept(store: JobStore) -> None:
    event = progress(5)
    event.time.FromSeconds(1_700_000_000)
    stored = await store.append_event(event)
    assert stored.time.seconds == 1_700_000_000
    assert (await store.list_events("j1", 0, 10))[0].time.seconds == 1_700_000_000


async def test_an_event_and_its_job_are_saved_together(store: JobStore) -> None:
    await store.create_job(job("j1"))
    failed = job("j1", pb.JOB_STATE_FAILED)
    failed.error.CopyFrom(common_pb2.Error(code="X"))
    event = await store.append_event(Event(job_id="j1", error=failed.error), job=failed)
    assert event.sequence == 1
    saved = await store.get_job("j1")
    assert saved is not None
    assert saved.state == pb.JOB_STATE_FAILED
    assert saved.error.code == "X"


async def test_a_failed_job_update_stores_no_event_and_uses_no_number(store: JobStore) -> None:
    with pytest.raises(KeyError):
        await store.append_event(progress(10, "missing"), job=job("missing"))
    assert await store.list_events("missing", 0, 10) == []
    assert (await store.append_event(progress(20, "missing"))).sequence == 1
    with pytest.raises(KeyError):
        await store.update_job(job("missing"))


async def test_pages_newest_first_filtered_by_state(store: JobStore) -> None:
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
    page, token = await store.list_jobs(page_size=1, page_token="", state=pb.JOB_STATE_QUEUED)
    assert [j.id for j in page] == ["j4"]
    page, token = await store.list_jobs(page_size=5, page_token=token, state=pb.JOB_STATE_QUEUED)
    assert ([j.id for j in page], token) == (["j2", "j0"], "")


@pytest.mark.parametrize("token", ["garbage!", "bm9wZTox", "am9iczp4"])
async def test_a_foreign_page_token_is_refused(store: JobStore, token: str) -> None:
    with pytest.raises(ValueError, match="page token"):
        await store.list_jobs(page_size=2, page_token=token, state=pb.JOB_STATE_UNSPECIFIED)


async def test_unfinished_jobs_are_listed_oldest_first_as_states_change(store: JobStore) -> None:
    for name in ("a", "b", "c", "d"):
        await store.create_job(job(name))
    await store.update_job(job("a", pb.JOB_STATE_RUNNING))
    await store.update_job(job("b", pb.JOB_STATE_SUCCEEDED))
    await store.append_event(progress(0, "c"), job=job("c", pb.JOB_STATE_CANCELLED))
    assert [j.id for j in await store.unfinished_jobs()] == ["a", "d"]
    assert (await store.get_job("a")) == job("a", pb.JOB_STATE_RUNNING)


async def test_records_survive_reopening(stores: Stores) -> None:
    first = await stores.open()
    await first.create_job(job("a", pb.JOB_STATE_RUNNING))
    await first.create_job(job("b", pb.JOB_STATE_SUCCEEDED))
    await first.create_job(job("c", pb.JOB_STATE_QUEUED))
    await first.append_event(Event(job_id="a"))
    await stores.close(first)
    second = await stores.open()
    assert [j.id for j in await second.unfinished_jobs()] == ["a", "c"]
    assert (await second.append_event(Event(job_id="a"))).sequence == 2


TURNS = [
    ChatTurn("Who came in?", "A person at [00:02].", (2.0,), 7, 1.0),
    ChatTurn("And then?", "They left.", (), 3, 2.0),
    ChatTurn("Anything else?", "No.", (), 2, 3.0),
]


async def test_chat_turns_are_kept_in_order_per_job_and_survive_reopening(stores: Stores) -> None:
    store = await stores.open()
    await asyncio.gather(*(store.append_chat_turn("j1", t) for t in TURNS))
    await store.append_chat_turn("j2", ChatTurn("Other job?", "Yes.", (), 1, 4.0))
    assert await store.chat_turns("j1") == TURNS
    assert await store.chat_turns("j1", last=2) == TURNS[1:]
    assert await store.chat_turns("j1", last=0) == []
    assert [t.question for t in await store.chat_turns("j2")] == ["Other job?"]
    assert await store.chat_turns("nope") == []
    await stores.close(store)
    reopened = await stores.open()
    assert await reopened.chat_turns("j1") == TURNS


async def test_two_stores_on_one_database_append_without_gaps_or_duplicates(
    stores: Stores,
) -> None:
    """Two replicas appending to one job at once: one history numbered 1..n, every event once,
    each replica's own events in the order it emitted them."""
    first, second = await stores.open(), await stores.open()
    await first.create_job(job("j1"))
    ours, theirs = range(0, 60), range(100, 160)
    stored, _ = await asyncio.gather(
        asyncio.gather(
            *(first.append_event(progress(p)) for p in ours),
            *(second.append_event(progress(p)) for p in theirs),
        ),
        asyncio.gather(
            *(first.append_chat_turn("j1", ChatTurn(f"q{n}", "a")) for n in range(10)),
            *(second.append_chat_turn("j1", ChatTurn(f"r{n}", "a")) for n in range(10)),
        ),
    )
    listed = await second.list_events("j1", 0, 1000)
    assert [e.sequence for e in listed] == list(range(1, 121))
    assert sorted(listed, key=lambda e: e.progress.percent) == stored
    percents = [int(e.progress.percent) for e in listed]
    assert sorted(percents) == [*ours, *theirs]
    assert [p for p in percents if p < 100] == list(ours)
    assert [p for p in percents if p >= 100] == list(theirs)
    questions = [t.question for t in await first.chat_turns("j1")]
    assert sorted(questions) == sorted([f"q{n}" for n in range(10)] + [f"r{n}" for n in range(10)])
    assert [q for q in questions if q.startswith("q")] == [f"q{n}" for n in range(10)]
    assert [q for q in questions if q.startswith("r")] == [f"r{n}" for n in range(10)]


async def expired(store: JobStore, job_id: str, owner: str) -> list[Lease]:
    """Claims of ``job_id`` by ``owner``, tried until the lease on it expires (10 s at most)."""
    deadline = asyncio.get_running_loop().time() + 10
    while not (leases := await store.claim(owner, lease_s=60, limit=1, job_id=job_id)):
        assert asyncio.get_running_loop().time() < deadline, "the lease never expired"
        await asyncio.sleep(0.02)
    return leases


async def test_claims_take_waiting_jobs_oldest_first_each_once(store: JobStore) -> None:
    for name in ("a", "b", "c"):
        await store.create_job(job(name))
    await store.create_job(job("done", pb.JOB_STATE_SUCCEEDED))
    first = await store.claim("r1", lease_s=60, limit=2)
    assert [(lease.job.id, lease.owner, lease.token) for lease in first] == [
        ("a", "r1", 1),
        ("b", "r1", 1),
    ]
    assert await store.queue_positions() == {"c": 1}
    (second,) = await store.claim("r2", lease_s=60, limit=5)
    assert (second.job.id, second.owner) == ("c", "r2")
    assert await store.claim("r2", lease_s=60, limit=5) == []
    assert await store.claim("r2", lease_s=60, limit=1, job_id="a") == []
    assert await store.queue_positions() == {}


async def test_a_stale_lease_cannot_write_after_the_new_owner(store: JobStore) -> None:
    """The stall: r1's lease expires, r2 takes the job over (a new fencing token), and r1,
    waking, can neither renew nor write; the history holds r2's events only after the
    takeover."""
    await store.create_job(job("j1"))
    (old,) = await store.claim("r1", lease_s=0.2, limit=1)
    running = job("j1", pb.JOB_STATE_RUNNING)
    await store.append_event(progress(10), job=running, lease=old)
    assert await store.renew(old, lease_s=0.2) is Renewal.HELD
    (new,) = await expired(store, "j1", "r2")
    assert new.token == old.token + 1
    assert new.job == running  # as its last owner left it: RUNNING, so a takeover
    assert await store.renew(old, lease_s=60) is Renewal.LOST
    with pytest.raises(LeaseLost):
        await store.append_event(progress(20), job=job("j1", pb.JOB_STATE_FAILED), lease=old)
    with pytest.raises(LeaseLost):
        await store.append_event(progress(20), lease=old)
    with pytest.raises(LeaseLost):
        await store.update_job(job("j1", pb.JOB_STATE_FAILED), lease=old)
    await store.append_event(progress(30), job=running, lease=new)
    assert [(e.sequence, e.progress.percent) for e in await store.list_events("j1", 0, 10)] == [
        (1, 10),
        (2, 30),
    ]
    assert await store.get_job("j1") == running
    assert await store.renew(new, lease_s=60) is Renewal.HELD


async def test_released_leases_are_claimed_again_at_once(store: JobStore) -> None:
    await store.create_job(job("a"))
    await store.create_job(job("b"))
    held = await store.claim("r1", lease_s=60, limit=2)
    await store.release("r1")
    assert await store.renew(held[0], lease_s=60) is Renewal.LOST
    with pytest.raises(LeaseLost):
        await store.append_event(progress(1, "a"), lease=held[0])
    again = await store.claim("r1", lease_s=60, limit=2)
    assert [(lease.job.id, lease.token) for lease in again] == [("a", 2), ("b", 2)]


async def test_a_cancel_request_reaches_the_owner_and_the_next_claimer(store: JobStore) -> None:
    await store.create_job(job("j1"))
    (lease,) = await store.claim("r1", lease_s=0.2, limit=1)
    assert not lease.cancel_requested
    await store.request_cancel("j1")
    assert await store.renew(lease, lease_s=0.2) is Renewal.CANCEL
    (taken,) = await expired(store, "j1", "r2")
    assert taken.cancel_requested


async def test_queue_positions_are_announced_once_per_change(store: JobStore) -> None:
    for name in ("a", "b", "c"):
        await store.create_job(job(name))

    def at(position: int) -> Event:
        return Event(progress=pb.AnalysisProgress(queue_position=position))

    announced = await store.announce_queue(at)
    assert [(e.job_id, e.progress.queue_position, e.sequence) for e in announced] == [
        ("a", 1, 1),
        ("b", 2, 1),
        ("c", 3, 1),
    ]
    assert await store.announce_queue(at) == []
    await store.claim("r1", lease_s=60, limit=1)
    announced = await store.announce_queue(at)
    assert [(e.job_id, e.progress.queue_position, e.sequence) for e in announced] == [
        ("b", 1, 2),
        ("c", 2, 2),
    ]
    assert await store.queue_positions() == {"b": 1, "c": 2}
    assert [e.progress.queue_position for e in await store.list_events("c", 0, 10)] == [3, 2]


async def test_replicas_claiming_at_once_never_share_a_job(stores: Stores) -> None:
    replicas = [await stores.open() for _ in range(3)]
    for n in range(30):
        await replicas[0].create_job(job(f"j{n:02}"))
    claimed = await asyncio.gather(
        *(replicas[n % 3].claim(f"r{n}", lease_s=60, limit=2) for n in range(20))
    )
    ids = [lease.job.id for leases in claimed for lease in leases]
    assert sorted(ids) == [f"j{n:02}" for n in range(30)]
    assert all(len(leases) <= 2 for leases in claimed)


async def test_a_job_created_leased_is_its_owners_alone(store: JobStore) -> None:
    lease = await store.create_job(job("mine"), owner="r1", lease_s=60)
    assert lease is not None
    assert (lease.job.id, lease.owner, lease.token) == ("mine", "r1", 1)
    assert await store.create_job(job("free")) is None
    assert [taken.job.id for taken in await store.claim("r2", lease_s=60, limit=5)] == ["free"]
    assert await store.queue_positions() == {}
    await store.append_event(
        progress(5, "mine"), job=job("mine", pb.JOB_STATE_RUNNING), lease=lease
    )
    assert await store.renew(lease, lease_s=60) is Renewal.HELD
