"""Session names bound to jobs, and joiners waiting for a name to be bound.

A ``session_id`` is a name bound to a job by ``POST /api/analyses`` or an upload with
``?session_id=``; ``join_session`` may name it before its job exists (the seed's flow: join
first, then upload) and waits here until it is bound.
"""

from __future__ import annotations

import asyncio


class SessionRegistry:
    """Session names bound to jobs, and joiners waiting for a name to be bound."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._bound: dict[str, asyncio.Event] = {}

    def bind(self, session_id: str, job_id: str) -> None:
        self._jobs[session_id] = job_id
        event = self._bound.pop(session_id, None)
        if event is not None:
            event.set()

    def get(self, session_id: str) -> str | None:
        return self._jobs.get(session_id)

    async def wait(self, session_id: str) -> str:
        while (job_id := self._jobs.get(session_id)) is None:
            await self._bound.setdefault(session_id, asyncio.Event()).wait()
        return job_id
