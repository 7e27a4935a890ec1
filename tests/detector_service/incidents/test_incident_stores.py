"""The incident-store contract, run against both stores: SQLite in a file and PostgreSQL (a real
server, one fresh database per test). Saves replace by id, pages run newest first with tokens,
snapshots only when asked, reviews are kept, replaced and never undone by a later save, the
statistics count per source, class and rule, and everything survives reopening (a restart, or
another replica on the same database)."""

from __future__ import annotations

import asyncio
import pathlib
import random
from collections.abc import Iterator

import pytest

from detector_service.incidents.keeping import IncidentKeeping
from detector_service.incidents.postgres_store import PostgresIncidentStore
from detector_service.incidents.store import IncidentStore
from tests.detector_service.incidents.helpers import START_NS, frame_jpeg
from tests.detector_service.incidents.test_review_store import made, review
from tests.detector_service.incidents.test_store import incident
from tests.detector_service.store_pool import StorePool, opened_stores
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

CONFIRMED, DISMISSED = pb.REVIEW_DECISION_CONFIRMED, pb.REVIEW_DECISION_DISMISSED


Stores = StorePool[IncidentKeeping]


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Stores]:
    path = tmp_path / "history" / "incidents.sqlite3"

    def sqlite(replica: str = "a") -> IncidentKeeping:
        return IncidentStore(path)

    def postgres(url: str, replica: str = "a") -> IncidentKeeping:
        return PostgresIncidentStore(url, replica=replica, pool_size=2)

    yield from opened_stores(request, sqlite, postgres)


async def test_incidents_survive_reopening(stores: Stores) -> None:
    store = stores.open()
    store.save(incident(1))
    store.save(incident(1, closed=True))  # the same incident, closed: replaces, not duplicates
    store.save(incident(2))
    store.set_clip_path(incident(1).id, "/clips/1.avi")
    stores.close(store)

    again = stores.open()
    found, token = await again.list("", 10, "", include_snapshot=True)
    assert token == ""
    assert [i.id for i in found] == [incident(2).id, incident(1).id]
    expected = incident(1, closed=True)
    expected.clip_path = "/clips/1.avi"
    assert found[1] == expected
    assert found[0] == incident(2)
    assert await again.get(incident(2).id) == incident(2)
    assert await again.get("nope") is None


async def test_pages_newest_first_with_tokens(stores: Stores) -> None:
    store = stores.open()
    order = list(range(1, 8))
    random.Random(7).shuffle(order)  # the order of opening decides, not the order of writing
    for n in order:
        store.save(incident(n, source_id="cam-a" if n % 2 else "cam-b"))
    pages: list[list[str]] = []
    token = ""
    while True:
        found, token = await store.list("", 3, token, include_snapshot=False)
        pages.append([i.id for i in found])
        if not token:
            break
    assert pages == [[incident(n).id for n in ns] for ns in ([7, 6, 5], [4, 3, 2], [1])]

    found, token = await store.list("cam-b", 2, "", include_snapshot=False)
    assert [i.id for i in found] == [incident(6).id, incident(4).id]
    found, token = await store.list("cam-b", 2, token, include_snapshot=False)
    assert [i.id for i in found] == [incident(2).id]
    assert token == ""

    with pytest.raises(ValueError, match="page token"):
        await store.list("", 3, "not-a-token", include_snapshot=False)


async def test_snapshot_only_when_asked(stores: Stores) -> None:
    store = stores.open()
    store.save(incident(1))
    (without,), _ = await store.list("", 10, "", include_snapshot=False)
    (with_,), _ = await store.list("", 10, "", include_snapshot=True)
    assert without.snapshot_jpeg == b""
    assert with_.snapshot_jpeg == frame_jpeg(1)
    assert (await store.get(incident(1).id, include_snapshot=False)) == without
    without.snapshot_jpeg = with_.snapshot_jpeg
    assert without == with_


async def test_a_review_is_kept_replaced_and_survives_later_saves(stores: Stores) -> None:
    store = stores.open()
    open_ = made(1)
    store.save(open_)
    assert store.review(open_.id, review(DISMISSED, "a phone")).result() is True
    # The tracker saves its own copy again when the incident closes: the review stays.
    store.save(made(1)).result()
    found = await store.get(open_.id)
    assert found is not None
    assert found.review == review(DISMISSED, "a phone")
    assert found.false_alarm
    stores.close(store)

    again = stores.open("b")
    assert again.review(open_.id, review(CONFIRMED)).result() is True
    (listed,), _ = await again.list("", 10, "", include_snapshot=False)
    assert listed.review == review(CONFIRMED)
    assert not listed.false_alarm
    assert again.review("no-such-incident", review(CONFIRMED)).result() is False


async def test_an_update_changes_the_stored_incident_and_what_is_counted(stores: Stores) -> None:
    store = stores.open()
    store.save(made(1))
    store.review(made(1).id, review(DISMISSED))

    def reject(found: pb.Incident) -> None:
        found.verification_state = pb.VERIFICATION_STATE_DONE
        found.verification.verdict = common_pb2.VERDICT_REJECTED

    changed = store.update(made(1).id, reject).result()
    assert changed is not None
    assert changed.verification.verdict == common_pb2.VERDICT_REJECTED
    assert changed.snapshot_jpeg == frame_jpeg(1)
    assert changed.review == review(DISMISSED)  # the review stays, merged
    assert await store.get(made(1).id) == changed
    assert [r.rejected for r in store.stats().result()] == [1]
    assert store.update("no-such-incident", reject).result() is None


def test_the_counted_columns_follow_every_save_of_the_message(stores: Stores) -> None:
    store = stores.open()

    def counts() -> list[tuple[str, int, int]]:
        return [(r.rule_id, r.rejected, r.false_alarms) for r in store.stats().result()]

    store.save(made(1))
    assert counts() == [("", 0, 0)]
    # Verified later: the tracker saves its copy again, now with the model's verdict.
    store.save(made(1, verdict=common_pb2.VERDICT_REJECTED))
    assert counts() == [("", 1, 1)]
    store.set_clip_path(made(1).id, "/clips/1.avi")
    assert counts() == [("", 1, 1)]
    store.save(made(1, verdict=common_pb2.VERDICT_UNCERTAIN))
    assert counts() == [("", 0, 0)]
    store.save(made(2, rule_id="fence"))
    assert counts() == [("", 0, 0), ("fence", 0, 0)]


async def test_false_alarm_follows_the_model_unless_an_operator_said(stores: Stores) -> None:
    store = stores.open()
    rejected, confirmed_by_model = (
        made(1, verdict=common_pb2.VERDICT_REJECTED),
        made(2, verdict=common_pb2.VERDICT_CONFIRMED),
    )
    # What the tracker may have written in the message does not decide: the rule does.
    confirmed_by_model.false_alarm = True
    store.save(rejected)
    store.save(confirmed_by_model)
    assert (await store.get(rejected.id, include_snapshot=False)).false_alarm  # type: ignore[union-attr]
    assert not (await store.get(confirmed_by_model.id)).false_alarm  # type: ignore[union-attr]
    store.review(rejected.id, review(CONFIRMED))
    store.review(confirmed_by_model.id, review(DISMISSED))
    found = {i.id: i.false_alarm for i in (await store.list("", 10, "", False))[0]}
    assert found == {rejected.id: False, confirmed_by_model.id: True}


def test_stats_count_per_source_class_and_rule(stores: Stores) -> None:
    store = stores.open()
    store.save(made(1, "gate", "knife"))
    store.save(made(2, "gate", "knife", verdict=common_pb2.VERDICT_REJECTED))
    store.save(made(3, "gate", "knife", verdict=common_pb2.VERDICT_REJECTED))
    store.save(made(4, "gate", "gun"))
    store.save(made(5, "bay", "vehicle after hours", rule_id="bay-night"))
    store.save(made(6, "bay", "vehicle after hours", rule_id="bay-night"))
    store.review(made(1).id, review(DISMISSED))
    store.review(made(3).id, review(CONFIRMED))  # overrides the model's rejection
    store.review(made(4).id, review(CONFIRMED))
    store.review(made(5).id, review(DISMISSED))

    rows = store.stats().result()
    got = [
        (r.source_id, r.class_name, r.rule_id, r.incidents, r.false_alarms, r.confirmed,
         r.dismissed, r.rejected, round(r.false_alarm_rate, 3))
        for r in rows
    ]  # fmt: skip
    assert got == [
        ("bay", "vehicle after hours", "bay-night", 2, 1, 0, 1, 0, 0.5),
        ("gate", "gun", "", 1, 0, 1, 0, 0, 0.0),
        ("gate", "knife", "", 3, 2, 1, 1, 2, 0.667),
    ]
    assert [r.source_id for r in store.stats("bay").result()] == ["bay"]
    # Incidents 1-6 opened a second apart: since the fourth's opening leaves 4, 5 and 6.
    since = [
        (r.source_id, r.class_name, r.incidents)
        for r in store.stats("", START_NS + 4 * 10**9).result()
    ]
    assert since == [("bay", "vehicle after hours", 2), ("gate", "gun", 1)]
    assert store.stats("nowhere").result() == []
    # Timestamps reach beyond the databases' 64-bit integers (years 1 to 9999).
    assert store.stats("", 253_402_300_799 * 10**9).result() == []
    assert len(store.stats("", -62_135_596_800 * 10**9).result()) == 3


async def test_opened_since_oldest_first_with_snapshots(stores: Stores) -> None:
    store = stores.open()
    for n in (3, 1, 2):
        store.save(incident(n))
    found = await store.opened_since(START_NS + 2 * 10**9)
    assert found == [incident(2), incident(3)]


async def test_writes_from_many_threads_all_arrive(stores: Stores) -> None:
    """The processing threads only queue: every save from every thread is kept."""
    store = stores.open()

    def camera(k: int) -> None:
        for n in range(k * 20, k * 20 + 20):
            store.save(incident(n, source_id=f"cam-{k}"))

    await asyncio.gather(*(asyncio.to_thread(camera, k) for k in range(4)))
    found, _ = await store.list("", 500, "", include_snapshot=False)
    assert sorted(i.id for i in found) == sorted(incident(n).id for n in range(80))
    assert [r.incidents for r in store.stats().result()] == [20, 20, 20, 20]
