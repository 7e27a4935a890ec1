"""The incident-store contract, and what both stores share: rows to messages, page tokens.

Two stores keep it: the embedded SQLite file (``store.py``, one detector) and PostgreSQL
(``postgres_store.py``, shared by every replica naming the database). Writes are called from the
sources' processing threads and must never wait for the disk or the network: they queue and
return a future, and run in the order they were queued. Reads queue behind the writes, so a read
sees every write queued before it. An operator's review lives apart from the incident's message,
so a later save of the message never undoes it.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Protocol

from detector_service import page_tokens
from detector_service.incidents.review import is_false_alarm
from vigil.detector.v1 import detector_service_pb2 as pb

_TOKEN_KIND = "incidents"
# A Timestamp may name a time far outside the databases' 64-bit integers.
MIN_NS, MAX_NS = -(2**63), 2**63 - 1


class IncidentKeeping(Protocol):
    """Where the incident tracker keeps incidents, their reviews and (with replicas) events."""

    def save(self, incident: pb.Incident) -> concurrent.futures.Future[None]:
        """Insert or replace ``incident`` by id (its review columns left alone)."""

    def set_clip_path(self, incident_id: str, clip_path: str) -> concurrent.futures.Future[None]:
        """Record the clip of an incident already saved."""

    def review(self, incident_id: str, review: pb.Review) -> concurrent.futures.Future[bool]:
        """Keep an operator's review (replacing an earlier one); whether the incident exists."""

    def update(
        self, incident_id: str, change: Callable[[pb.Incident], None]
    ) -> concurrent.futures.Future[pb.Incident | None]:
        """Apply ``change`` to the stored incident; the incident as changed (snapshot included),
        or None when it is not stored."""

    def stats(
        self, source_id: str = "", since_ns: int | None = None
    ) -> concurrent.futures.Future[list[pb.IncidentStats]]:
        """Incidents and false alarms per (source, class, rule), sorted by them, of one source
        (all when empty) opened at or after ``since_ns`` (all when None). Any thread."""

    def announce(self, event: pb.StreamIncidentsResponse) -> None:
        """Tell the other replicas' streams about an event this one streamed itself."""

    async def opened_since(self, since_ns: int) -> list[pb.Incident]:
        """This replica's incidents opened at or after ``since_ns``, oldest first, with their
        snapshots (for the verifier's retries: one replica verifies each)."""

    async def get(self, incident_id: str, include_snapshot: bool = True) -> pb.Incident | None: ...

    async def list(
        self, source_id: str, page_size: int, page_token: str, include_snapshot: bool
    ) -> tuple[list[pb.Incident], str]:
        """One page, newest opening first, and the token of the next page ("" when none).
        Raises ``ValueError`` for a token no store made."""

    def close(self) -> None:
        """Finish queued writes and close (blocks until they are done)."""


def incident_of(data: bytes, review: bytes | None, snapshot: bytes | None) -> pb.Incident:
    """An incident from its columns: its review merged, its false alarm derived."""
    incident = pb.Incident.FromString(data)
    if review is not None:
        incident.review.ParseFromString(review)
    incident.false_alarm = is_false_alarm(incident)
    if snapshot is not None:
        incident.snapshot_jpeg = snapshot
    return incident


def stripped(incident: pb.Incident) -> bytes:
    """The message without its snapshot (which the stores keep in a column of its own)."""
    copy = pb.Incident()
    copy.CopyFrom(incident)
    copy.ClearField("snapshot_jpeg")
    return copy.SerializeToString()


def clamped(time_ns: int) -> int:
    return min(max(time_ns, MIN_NS), MAX_NS)


def stats_of(row: tuple[str, str, str, int, int, int, int, int]) -> pb.IncidentStats:
    source_id, class_name, rule_id, incidents, false_alarms, confirmed, dismissed, rejected_ = row
    return pb.IncidentStats(
        source_id=source_id,
        class_name=class_name,
        rule_id=rule_id,
        incidents=incidents,
        false_alarms=false_alarms,
        confirmed=confirmed,
        dismissed=dismissed,
        rejected=rejected_,
        false_alarm_rate=false_alarms / incidents if incidents else 0.0,
    )


def encode_token(opened_ns: int, seq: int) -> str:
    return page_tokens.encode(_TOKEN_KIND, opened_ns, seq)


def decode_token(token: str) -> tuple[int, int]:
    return page_tokens.decode(_TOKEN_KIND, token)
