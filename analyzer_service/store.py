"""Where videos, jobs, job events and chat conversations are kept.

The service talks to ``JobStore`` only: the embedded SQLite store by default, PostgreSQL when
several analyzer replicas need one history (``stores.open_store`` picks one from the settings).
Records are the contract's own messages: whatever the contract can say, the store can keep.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
from collections.abc import Callable
from typing import Any, Protocol

from vigil.analyzer.v1 import analyzer_service_pb2 as pb

Event = pb.StreamAnalysisEventsResponse

UNFINISHED_STATES = (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
FINISHED_STATES = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def is_terminal(event: Event) -> bool:
    return event.WhichOneof("event") in ("complete", "error")


@dataclasses.dataclass(frozen=True)
class ChatTurn:
    """One question about a job's video and the answer the model gave."""

    question: str
    answer: str
    cited_times_s: tuple[float, ...] = ()
    completion_tokens: int = 0
    # Seconds since the epoch when the answer was complete.
    created_at: float = 0.0


class StoreUnavailable(Exception):
    """The configured store cannot be opened (a database that does not answer, a URL of an
    unknown kind). The message says what and where, never a password."""


class LeaseLost(Exception):
    """A write carried a lease that is no longer the job's: another replica took the job over
    (or its owner released it). Nothing of the write was kept."""


@dataclasses.dataclass(frozen=True)
class Lease:
    """The right of one replica (``owner``) to run one job and write its state and events.

    ``token`` is the job's fencing token: bumped on every claim, so a write carrying an older
    one comes from a replica that lost the job and is refused. ``job`` is the job as stored when
    it was claimed (RUNNING with attempts: an earlier run stopped without an outcome).
    """

    job: pb.Job
    owner: str
    token: int
    cancel_requested: bool = False


class Renewal(enum.Enum):
    HELD = "held"
    # Someone asked to cancel the job (CancelJob on any replica); the lease is still held.
    CANCEL = "cancel"
    LOST = "lost"


class Listener(Protocol):
    """Told of writes made through other stores on the same database (``JobStore.watch``)."""

    def event_stored(self, job_id: str, sequence: int) -> None: ...

    def job_queued(self, job_id: str) -> None:
        """A job may be claimed (new, released, or "" for: look again, something may be)."""
        ...

    def cancel_requested(self, job_id: str) -> None: ...


def turn_to_json(turn: ChatTurn) -> str:
    return json.dumps(dataclasses.asdict(turn))


def turn_from_json(data: str) -> ChatTurn:
    fields: dict[str, Any] = json.loads(data)
    fields["cited_times_s"] = tuple(fields.get("cited_times_s", ()))
    return ChatTurn(**fields)


def encode_page_token(seq: int) -> str:
    """The token of the page that starts below the job numbered ``seq``."""
    return base64.urlsafe_b64encode(f"jobs:{seq}".encode()).decode()


def decode_page_token(token: str) -> int:
    """The job number a token of ``encode_page_token`` holds; ValueError for any other text."""
    try:
        kind, _, seq = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "jobs":
            raise ValueError(token)
        return int(seq)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("invalid page token") from exc


class JobStore(Protocol):
    """Durable records. Every method may be called concurrently from the event loop."""

    async def create_video(self, video: pb.Video) -> None: ...

    async def get_video(self, video_id: str) -> pb.Video | None: ...

    async def create_job(
        self, job: pb.Job, *, owner: str | None = None, lease_s: float = 0.0
    ) -> Lease | None:
        """Keep a new job; with ``owner``, already leased to it (the replica it was submitted
        to, when that one has room: no other replica races it for the job). Without, other
        replicas are told that it waits."""
        ...

    async def get_job(self, job_id: str) -> pb.Job | None: ...

    async def update_job(self, job: pb.Job, *, lease: Lease | None = None) -> None:
        """Save ``job``; with ``lease``, only while that lease is the job's (else LeaseLost)."""
        ...

    async def append_event(
        self, event: Event, *, job: pb.Job | None = None, lease: Lease | None = None
    ) -> Event:
        """Store ``event`` under the job's next sequence (1, 2, ... without gaps).

        Fills in ``sequence``, and ``time`` when unset, and returns the stored event. When
        ``job`` is given it is saved in the same transaction, so a job's state and its events
        never disagree, even across a crash. Appends to one job through one store are numbered
        in the order they were called, even when they run concurrently; stores sharing a
        database (replicas) never give two events one number. With ``lease``, nothing is stored
        unless that lease is still the job's: ``LeaseLost``.
        """
        ...

    async def claim(
        self, owner: str, *, lease_s: float, limit: int, job_id: str | None = None
    ) -> list[Lease]:
        """Leases on up to ``limit`` unfinished jobs nobody holds (never leased, released, or
        whose lease expired), oldest first; with ``job_id``, on that job only. Replicas claiming
        at once never get one job both. Each claim bumps the job's fencing token."""
        ...

    async def renew(self, lease: Lease, *, lease_s: float) -> Renewal:
        """Extend the lease by ``lease_s`` from now, unless it was lost."""
        ...

    async def release(self, owner: str) -> None:
        """Give up every lease ``owner`` holds (a replica stopping, or starting again under the
        same name), so that the jobs are claimed again at once; later writes under them fail."""
        ...

    async def request_cancel(self, job_id: str) -> None:
        """Ask whoever holds the job to cancel it (seen at its next renewal, or told at once)."""
        ...

    async def queue_positions(self) -> dict[str, int]:
        """Each job waiting to be claimed, by id, and its place in the one queue (from 1)."""
        ...

    async def announce_queue(self, make: Callable[[int], Event]) -> list[Event]:
        """Append ``make(position)`` to each waiting job whose position changed since the last
        announcement (from any replica), and return those events. Announcements run one at a
        time, so each reflects a queue at least as new as the one before."""
        ...

    def watch(self, listener: Listener) -> None:
        """Tell ``listener`` of writes through other stores on this database until ``close``."""
        ...

    async def list_events(self, job_id: str, after_sequence: int, limit: int) -> list[Event]:
        """Events with a sequence above ``after_sequence``, oldest first."""
        ...

    async def list_jobs(
        self, *, page_size: int, page_token: str, state: pb.JobState.ValueType
    ) -> tuple[list[pb.Job], str]:
        """One page of jobs, newest first, and the token of the next page ("" when none).

        Raises ``ValueError`` for a token this store did not make.
        """
        ...

    async def unfinished_jobs(self) -> list[pb.Job]:
        """Jobs left QUEUED or RUNNING, oldest first."""
        ...

    async def append_chat_turn(self, job_id: str, turn: ChatTurn) -> None:
        """Keep a finished question and answer at the end of the job's conversation (in call
        order, as events)."""
        ...

    async def chat_turns(self, job_id: str, *, last: int | None = None) -> list[ChatTurn]:
        """The job's conversation, oldest first; with ``last``, only its last turns."""
        ...

    async def close(self) -> None: ...
