"""Operators' feedback on incidents: a review (confirmed or dismissed) and the false-alarm counts.

An incident is a false alarm when an operator dismissed it, or when the language model rejected
it and no operator confirmed it; a later review replaces an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk.common import enum_name, from_fields, optional_seconds, timestamp

ReviewDecision = Literal["confirmed", "dismissed", "unknown"]
DECISIONS: dict[str, pb.ReviewDecision.ValueType] = {
    "confirmed": pb.REVIEW_DECISION_CONFIRMED,
    "dismissed": pb.REVIEW_DECISION_DISMISSED,
}
# The service's limits, checked here too so that a caller hears of them before a round trip.
MAX_NOTE = 500
MAX_REVIEWER = 100


@dataclass(frozen=True)
class Review:
    """An operator's judgement of an incident: ``decision`` "confirmed" (a real incident) or
    "dismissed" (a false alarm), with a note and who reviewed; ``reviewed_at`` in seconds."""

    decision: ReviewDecision
    note: str
    reviewer: str
    reviewed_at: float | None
    proto: pb.Review = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.Review) -> Review:
        decision = enum_name(pb.ReviewDecision.Name, m.decision, "REVIEW_DECISION_")
        return from_fields(
            cls,
            m,
            decision=cast(ReviewDecision, decision),
            reviewed_at=optional_seconds(m, "reviewed_at"),
            proto=m,
        )

    @staticmethod
    def of(m: pb.Incident) -> Review | None:
        """An incident's review; None when it was never reviewed."""
        return Review.from_proto(m.review) if m.HasField("review") else None


@dataclass(frozen=True)
class IncidentStats:
    """The incidents of one (source, class, rule): ``rule_id`` is empty for weapon incidents,
    and ``class_name`` is a rule's incident kind. ``false_alarm_rate`` = false_alarms /
    incidents."""

    source_id: str
    class_name: str
    rule_id: str
    incidents: int
    false_alarms: int
    confirmed: int
    dismissed: int
    rejected: int
    false_alarm_rate: float
    proto: pb.IncidentStats = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, m: pb.IncidentStats) -> IncidentStats:
        return from_fields(cls, m, proto=m)


def review_request(
    incident_id: str, decision: str, note: str, reviewer: str
) -> pb.ReviewIncidentRequest:
    if decision not in DECISIONS:
        raise InvalidInput(
            f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}", field="decision"
        )
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"note is longer than {MAX_NOTE} characters", field="note")
    if len(reviewer) > MAX_REVIEWER:
        raise InvalidInput(f"reviewer is longer than {MAX_REVIEWER} characters", field="reviewer")
    return pb.ReviewIncidentRequest(
        incident_id=incident_id, decision=DECISIONS[decision], note=note, reviewer=reviewer
    )


def stats_request(source_id: str, since: float | None) -> pb.GetIncidentStatsRequest:
    request = pb.GetIncidentStatsRequest(source_id=source_id)
    if since is not None:
        request.since.CopyFrom(timestamp(since))
    return request


def stats_of(response: pb.GetIncidentStatsResponse) -> list[IncidentStats]:
    return [IncidentStats.from_proto(m) for m in response.stats]
