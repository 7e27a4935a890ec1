"""Where videos, jobs, job events and chat conversations are kept.

The service talks to ``JobStore`` only: the embedded SQLite store by default, PostgreSQL when
several analyzer replicas need one history (``stores.open_store`` picks one from the settings).
Records are the contract's own messages: whatever the contract can say, the store can keep.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any, Protocol

from vigil.analyzer.v1 import analyzer_service_pb2 as pb

Event = pb.StreamAnalysisEventsResponse

UNFINISHED_STATES = (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)


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

    async def create_job(self, job: pb.Job) -> None: ...

    async def get_job(self, job_id: str) -> pb.Job | None: ...

    async def update_job(self, job: pb.Job) -> None: ...

    async def append_event(self, event: Event, *, job: pb.Job | None = None) -> Event:
        """Store ``event`` under the job's next sequence (1, 2, ... without gaps).

        Fills in ``sequence``, and ``time`` when unset, and returns the stored event. When
        ``job`` is given it is saved in the same transaction, so a job's state and its events
        never disagree, even across a crash. Appends to one job through one store are numbered
        in the order they were called, even when they run concurrently; stores sharing a
        database (replicas) never give two events one number.
        """
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
