"""Operators' reviews in the SQLite incident history: kept, replaced, never undone by the
tracker's later saves, counted per source, class and rule, and added to older databases."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from detector_service.incidents.store import IncidentStore, stats_query
from tests.detector_service.incidents.helpers import START_NS
from tests.detector_service.incidents.test_store import incident
from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

CONFIRMED, DISMISSED = pb.REVIEW_DECISION_CONFIRMED, pb.REVIEW_DECISION_DISMISSED
# The incidents table as the first release made it, before reviews and watch rules.
FIRST_SCHEMA = """
CREATE TABLE incidents (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source_id TEXT NOT NULL,
    class_name TEXT NOT NULL,
    opened_ns INTEGER NOT NULL,
    closed_ns INTEGER,
    data BLOB NOT NULL,
    snapshot BLOB NOT NULL
);
CREATE INDEX incidents_by_time ON incidents (opened_ns, seq);
CREATE INDEX incidents_by_source ON incidents (source_id, opened_ns, seq);
"""


def first_release_database(path: pathlib.Path, incidents: list[pb.Incident]) -> None:
    path.parent.mkdir(mode=0o700)
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_SCHEMA)
        for i in incidents:
            db.execute(
                "INSERT INTO incidents (id, source_id, class_name, opened_ns, data, snapshot)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (i.id, i.source_id, i.class_name, i.opened_at.ToNanoseconds(),
                 i.SerializeToString(), b""),
            )  # fmt: skip
    path.chmod(0o600)


def review(decision: pb.ReviewDecision.ValueType, note: str = "") -> pb.Review:
    made = pb.Review(decision=decision, note=note, reviewer="ana")
    made.reviewed_at.FromSeconds(1_800_000_000)
    return made


def made(
    n: int,
    source_id: str = "cam",
    class_name: str = "knife",
    rule_id: str = "",
    verdict: common_pb2.Verdict.ValueType | None = None,
) -> pb.Incident:
    found = incident(n, source_id)
    found.class_name = class_name
    found.rule_id = rule_id
    if verdict is not None:
        found.verification_state = pb.VERIFICATION_STATE_DONE
        found.verification.verdict = verdict
    return found


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "history" / "incidents.sqlite3"


async def test_a_review_is_kept_replaced_and_survives_later_saves(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    open_ = made(1)
    store.save(open_)
    assert store.review(open_.id, review(DISMISSED, "a phone")).result() is True
    # The tracker saves its own copy again when the incident closes: the review stays.
    store.save(made(1)).result()
    found = await store.get(open_.id)
    assert found is not None
    assert found.review == review(DISMISSED, "a phone")
    assert found.false_alarm
    store.close()

    again = IncidentStore(db_path)
    try:
        assert again.review(open_.id, review(CONFIRMED)).result() is True
        (listed,), _ = await again.list("", 10, "", include_snapshot=False)
        assert listed.review == review(CONFIRMED)
        assert not listed.false_alarm
        assert again.review("no-such-incident", review(CONFIRMED)).result() is False
    finally:
        again.close()


def test_the_counted_columns_follow_every_save_of_the_message(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    try:

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
    finally:
        store.close()


async def test_false_alarm_follows_the_model_unless_an_operator_said(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    try:
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
    finally:
        store.close()


async def test_stats_count_per_source_class_and_rule(db_path: pathlib.Path) -> None:
    store = IncidentStore(db_path)
    try:
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
        # Timestamps reach beyond SQLite's 64-bit integers (years 1 to 9999).
        assert store.stats("", 253_402_300_799 * 10**9).result() == []
        assert len(store.stats("", -62_135_596_800 * 10**9).result()) == 3
    finally:
        store.close()


@pytest.mark.parametrize(
    ("source_id", "since_ns"), [("", None), ("gate", None), ("", 0), ("gate", 0)]
)
def test_counting_reads_one_index_not_the_messages(
    db_path: pathlib.Path, source_id: str, since_ns: int | None
) -> None:
    IncidentStore(db_path).close()
    sql, params = stats_query(source_id, since_ns)
    with sqlite3.connect(db_path) as db:
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "COVERING INDEX incidents_stats" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # grouped and sorted in the index's order


async def test_an_older_database_gains_the_columns_and_keeps_its_incidents(
    db_path: pathlib.Path,
) -> None:
    old = [made(1, "gate"), made(2, "gate", verdict=common_pb2.VERDICT_REJECTED)]
    # A message written by a newer tracker into the old table (a branch merged before this one).
    old.append(made(3, "bay", "loiter", rule_id="bay-night"))
    first_release_database(db_path, old)

    store = IncidentStore(db_path)
    try:
        listed, _ = await store.list("", 10, "", include_snapshot=False)
        assert [i.id for i in listed] == [i.id for i in reversed(old)]
        assert [i.false_alarm for i in listed] == [False, True, False]
        rows = [(r.source_id, r.rule_id, r.incidents, r.rejected) for r in store.stats().result()]
        assert rows == [("bay", "bay-night", 1, 0), ("gate", "", 2, 1)]
        assert store.review(old[0].id, review(DISMISSED)).result()
        assert (await store.get(old[0].id)).false_alarm  # type: ignore[union-attr]
    finally:
        store.close()
    # Opened again: nothing left to add, the review still there.
    again = IncidentStore(db_path)
    try:
        assert (await again.get(old[0].id)).review.decision == DISMISSED  # type: ignore[union-attr]
    finally:
        again.close()
