"""Calls on one key taken one at a time, in the order they were made.

Separate from the PostgreSQL store that uses it because it is plain asyncio, not database
work: the store numbers a job's events in the order its caller emitted them, as SQLite's single
thread does, by running the appends to one job through this.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator


@dataclasses.dataclass
class _Turns:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    users: int = 0


class InOrder:
    """Calls on one key run one at a time, in the order they were made (asyncio.Lock is FIFO);
    keys nobody uses are forgotten."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], _Turns] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, key: tuple[str, str]) -> AsyncIterator[None]:
        turns = self._keys.setdefault(key, _Turns())
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if turns.users == 0:
                del self._keys[key]
