"""The REST shapes of operators' feedback: a review of an incident and the false-alarm counts
(``@mirrors``: see ``bridge.models``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.models import copied, iso, mirrors
from vigil import sdk
from vigil.sdk.review_types import MAX_NOTE


class ReviewBody(BaseModel):
    """An operator's judgement: ``confirmed`` (a real incident) or ``dismissed`` (a false alarm);
    it replaces any earlier review. The reviewer is the bridge's user (none yet: empty)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"decision": "dismissed", "note": "a phone, not a gun"}]},
    )
    decision: Literal["confirmed", "dismissed"]
    note: str = Field(default="", max_length=MAX_NOTE)


@mirrors(sdk.Review, converted={"decision", "reviewed_at"})
class Review(BaseModel):
    decision: str
    note: str
    reviewer: str
    reviewed_at: str | None

    @classmethod
    def from_sdk(cls, r: sdk.Review) -> Review:
        return copied(cls, r, decision=r.decision, reviewed_at=iso(r.proto.reviewed_at))


@mirrors(sdk.IncidentStats)
class IncidentStats(BaseModel):
    """The incidents of one (source, class, rule); ``rule_id`` is empty for weapon incidents.
    False alarms: dismissed, or rejected by the model and not confirmed."""

    source_id: str
    class_name: str
    rule_id: str
    incidents: int
    false_alarms: int
    confirmed: int
    dismissed: int
    rejected: int
    false_alarm_rate: float

    @classmethod
    def from_sdk(cls, s: sdk.IncidentStats) -> IncidentStats:
        return copied(cls, s)


class IncidentStatsList(BaseModel):
    """One row per (source, class, rule), sorted by them."""

    stats: list[IncidentStats]
