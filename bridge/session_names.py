"""Session names bound to jobs: the store contract, and the in-memory store.

A ``session_id`` is a name bound to a job by ``POST /api/analyses`` or an upload with
``?session_id=``; ``join_session`` may name it before its job exists (the seed's flow: join
first, then upload) and waits until it is bound. One bridge keeps the names in memory
(``MemoryBindings``); replicas share them in Redis (``bridge.redis_bindings``), so a name bound
through one bridge is found, and waited for, on every other.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class SessionBindings(Protocol):
    """Where session names are bound. ``bind`` and ``get`` raise ``vigil.core.errors.Unavailable``
    when the store cannot be reached; ``wait`` rides such outages out and returns once the name is
    bound."""

    async def bind(self, session_id: str, job_id: str) -> None: ...

    async def get(self, session_id: str) -> str | None: ...

    async def wait(self, session_id: str) -> str: ...

    async def close(self) -> None: ...


class MemoryBindings:
    """One bridge's names, in its memory (the embedded default)."""

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._bound: dict[str, asyncio.Event] = {}

    async def bind(self, session_id: str, job_id: str) -> None:
        self._jobs[session_id] = job_id
        event = self._bound.pop(session_id, None)
        if event is not None:
            event.set()

    async def get(self, session_id: str) -> str | None:
        return self._jobs.get(session_id)

    async def wait(self, session_id: str) -> str:
        while (job_id := self._jobs.get(session_id)) is None:
            await self._bound.setdefault(session_id, asyncio.Event()).wait()
        return job_id

    async def close(self) -> None:
        return None
