"""Which incident events alert people (the webhook, the page's toasts) under a source's policy.

AT_OPENING alerts when a weapon incident opens, WHEN_CONFIRMED only once the language model has
confirmed it (an uncertain verdict alerts too: the model could not rule it out; a rejected one
never does), BOTH at either. An incident whose verification was given up (SKIPPED) alerts under
WHEN_CONFIRMED and BOTH: a weapon nobody could check must still reach someone.

A watch rule's incident (``rule_id`` set) was already judged by the model when it opened: it
alerts at opening whatever the policy, and its close follows.

The webhook also gets the later events of an incident it was alerted to (its verdict, its end)
with ``alert`` false, so a receiver can withdraw an alarm the model rejected; it never hears of
an incident that did not alert.

Pure functions: the tracker asks them under its lock for every event it emits.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

from vigil.common.v1 import common_pb2
from vigil.detector.v1 import detector_service_pb2 as pb

Policy: TypeAlias = pb.AlertPolicy.ValueType
PolicyName = Literal["at_opening", "when_confirmed", "both"]

POLICY_OF_NAME: dict[str, Policy] = {
    "at_opening": pb.ALERT_POLICY_AT_OPENING,
    "when_confirmed": pb.ALERT_POLICY_WHEN_CONFIRMED,
    "both": pb.ALERT_POLICY_BOTH,
}
_AT_OPENING = frozenset({pb.ALERT_POLICY_AT_OPENING, pb.ALERT_POLICY_BOTH})
_WITH_VERDICT = frozenset({pb.ALERT_POLICY_WHEN_CONFIRMED, pb.ALERT_POLICY_BOTH})
_ALERTING_VERDICTS = frozenset({common_pb2.VERDICT_CONFIRMED, common_pb2.VERDICT_UNCERTAIN})


def resolve(policy: Policy, default: Policy, verifying: bool) -> Policy:
    """The policy a source's incidents follow: its own, else the service's; without verification
    every policy alerts at opening (no verdict would ever come)."""
    chosen = policy or default
    if not verifying:
        return pb.ALERT_POLICY_AT_OPENING
    return chosen


def _verdict_alerts(incident: pb.Incident) -> bool:
    state = incident.verification_state
    if state == pb.VERIFICATION_STATE_SKIPPED:
        return True
    return (
        state == pb.VERIFICATION_STATE_DONE and incident.verification.verdict in _ALERTING_VERDICTS
    )


def is_alert(kind: pb.IncidentEventType.ValueType, incident: pb.Incident, policy: Policy) -> bool:
    """Whether this event alerts people (``StreamIncidentsResponse.alert``)."""
    if incident.rule_id:
        return kind == pb.INCIDENT_EVENT_TYPE_OPENED
    if kind == pb.INCIDENT_EVENT_TYPE_OPENED:
        return policy in _AT_OPENING
    if kind == pb.INCIDENT_EVENT_TYPE_VERIFIED:
        return policy in _WITH_VERDICT and _verdict_alerts(incident)
    return False


def follows_alert(
    kind: pb.IncidentEventType.ValueType, incident: pb.Incident, policy: Policy
) -> bool:
    """Whether this event continues an incident that alerted before it (for the webhook)."""
    if incident.rule_id:
        return kind == pb.INCIDENT_EVENT_TYPE_CLOSED
    if kind == pb.INCIDENT_EVENT_TYPE_VERIFIED:
        return policy in _AT_OPENING
    if kind == pb.INCIDENT_EVENT_TYPE_CLOSED:
        return policy in _AT_OPENING or (policy in _WITH_VERDICT and _verdict_alerts(incident))
    return False
