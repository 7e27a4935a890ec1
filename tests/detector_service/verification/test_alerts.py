"""Which incident events alert people, per policy and verdict (detector_service.alerts)."""

from __future__ import annotations

import pytest

from detector_service.alerts import follows_alert, is_alert
from vigil.common.v1 import common_pb2 as cpb
from vigil.detector.v1 import detector_service_pb2 as pb

OPENED, VERIFIED, CLOSED = (
    pb.INCIDENT_EVENT_TYPE_OPENED,
    pb.INCIDENT_EVENT_TYPE_VERIFIED,
    pb.INCIDENT_EVENT_TYPE_CLOSED,
)
AT_OPENING, WHEN_CONFIRMED, BOTH = (
    pb.ALERT_POLICY_AT_OPENING,
    pb.ALERT_POLICY_WHEN_CONFIRMED,
    pb.ALERT_POLICY_BOTH,
)


def verified(verdict: cpb.Verdict.ValueType) -> pb.Incident:
    return pb.Incident(
        id="i",
        class_name="knife",
        verification_state=pb.VERIFICATION_STATE_DONE,
        verification=cpb.Verification(verdict=verdict),
    )


@pytest.mark.parametrize(
    ("policy", "verdict", "opened", "on_verdict", "close_follows"),
    [
        (AT_OPENING, cpb.VERDICT_CONFIRMED, True, False, True),
        (AT_OPENING, cpb.VERDICT_REJECTED, True, False, True),
        (WHEN_CONFIRMED, cpb.VERDICT_CONFIRMED, False, True, True),
        (WHEN_CONFIRMED, cpb.VERDICT_UNCERTAIN, False, True, True),
        (WHEN_CONFIRMED, cpb.VERDICT_REJECTED, False, False, False),
        (BOTH, cpb.VERDICT_CONFIRMED, True, True, True),
        (BOTH, cpb.VERDICT_REJECTED, True, False, True),
    ],
)
def test_weapon_incidents_alert_as_their_policy_and_verdict_say(
    policy: pb.AlertPolicy.ValueType,
    verdict: cpb.Verdict.ValueType,
    opened: bool,
    on_verdict: bool,
    close_follows: bool,
) -> None:
    pending = pb.Incident(id="i", verification_state=pb.VERIFICATION_STATE_PENDING)
    done = verified(verdict)
    assert is_alert(OPENED, pending, policy) is opened
    assert is_alert(VERIFIED, done, policy) is on_verdict
    assert is_alert(CLOSED, done, policy) is False
    assert follows_alert(CLOSED, done, policy) is close_follows


def test_a_skipped_verification_alerts_under_when_confirmed() -> None:
    skipped = pb.Incident(id="i", verification_state=pb.VERIFICATION_STATE_SKIPPED)
    assert is_alert(VERIFIED, skipped, WHEN_CONFIRMED)
    assert not is_alert(OPENED, skipped, WHEN_CONFIRMED)


@pytest.mark.parametrize("policy", [AT_OPENING, WHEN_CONFIRMED, BOTH])
def test_a_watch_rules_incident_alerts_at_opening_whatever_the_policy(
    policy: pb.AlertPolicy.ValueType,
) -> None:
    # The model already said yes to open it; no VERIFIED event will ever come for it.
    rule = pb.Incident(id="r", class_name="fence-climb", rule_id="fence")
    assert is_alert(OPENED, rule, policy)
    assert not is_alert(CLOSED, rule, policy)
    assert follows_alert(CLOSED, rule, policy)
