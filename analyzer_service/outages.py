"""Riding out a job database that is away for a moment (a restart, a failover).

A store out of reach raises ``Unavailable``. RPCs pass that on (retryable: the client tries
again); work already under way (a job writing its events, a follower reading them) waits for the
database instead, trying again with backoff for up to ``OUTAGE_S``, so a restart costs it a pause
rather than its outcome. Writes tried again are kept once (``JobStore.append_event``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from vigil.core.backoff import Backoff
from vigil.core.errors import Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class Counts(Protocol):
    def inc(self) -> None: ...


# Longer than a restart or a failover takes; a database away for longer is down, and the work
# stops (a job's lease then expires and the job runs again, here or on another replica).
OUTAGE_S = 60.0


async def outlast(
    call: Callable[[], Awaitable[T]],
    what: str,
    waits: Counts,
    *,
    within_s: float = OUTAGE_S,
) -> T:
    """``call()``, tried again while it raises ``Unavailable``, for up to ``within_s``; each
    wait (one per outage) counted in ``waits``."""
    backoff = Backoff(0.1, 2.0)
    deadline = time.monotonic() + within_s
    waited = False
    while True:
        try:
            result = await call()
        except Unavailable as exc:
            if time.monotonic() + backoff.peek() > deadline:
                log.warning("%s: gave up after %.0f s: %s", what, within_s, exc.message)
                raise
            if not waited:
                log.warning("%s: %s; waiting for it", what, exc.message)
                waits.inc()
                waited = True
            await asyncio.sleep(backoff.next())
            continue
        if waited:
            log.info("%s: the database answers again", what)
        return result
