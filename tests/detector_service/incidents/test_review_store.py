"""Operators' reviews in the SQLite incident history: counted from one index, and added to
older databases (what both stores do with reviews: ``test_incident_stores.py``)."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from detector_service.incidents.store import IncidentStore, stats_query
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
