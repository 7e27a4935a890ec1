"""What makes an incident a false alarm: the one rule the store, the stream and the metrics share.

An operator's dismissal makes it one; an operator's confirmation clears it, whatever the model
said; without a review, the model's rejection (``verification.verdict == VERDICT_REJECTED``) makes
it one. The incident store's statistics count with the same rule in SQL (``FALSE_ALARM_SQL``).
"""

from __future__ import annotations

from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

CONFIRMED = pb.REVIEW_DECISION_CONFIRMED
DISMISSED = pb.REVIEW_DECISION_DISMISSED

# The rule over the store's columns ``decision`` (ReviewDecision) and ``rejected`` (0 or 1).
FALSE_ALARM_SQL = f"(decision = {DISMISSED} OR (decision != {CONFIRMED} AND rejected = 1))"


def rejected(incident: pb.Incident) -> bool:
    """The language model rejected it."""
    return (
        incident.HasField("verification")
        and incident.verification.verdict == common_pb2.VERDICT_REJECTED
    )


def is_false_alarm(incident: pb.Incident) -> bool:
    decision = incident.review.decision
    if decision == DISMISSED:
        return True
    return decision != CONFIRMED and rejected(incident)


def apply_review(incident: pb.Incident, review: pb.Review) -> None:
    """Give ``incident`` its (latest) review and the false-alarm flag that follows from it."""
    incident.review.CopyFrom(review)
    incident.false_alarm = is_false_alarm(incident)
