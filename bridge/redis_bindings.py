"""Session names bound to jobs in Redis, shared by every bridge replica (VIGIL_BRIDGE_REDIS_URL).

A binding is one key, ``vigil:bridge:session:<name>`` = job id, kept for ``BINDING_TTL_S`` after
it was last bound (names are per upload; Redis need not keep them for ever). Joiners waiting for
a name poll it: a GET every ``POLL_S`` is nothing to Redis, and unlike pub/sub it cannot miss a
binding made while Redis or the connection was away. Calls fail fast (``TIMEOUT_S``) with
``Unavailable`` when Redis is down, so requests degrade with a clear error instead of hanging;
the client reconnects on the next call once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from vigil.core.errors import Unavailable

log = logging.getLogger(__name__)

KEY_PREFIX = "vigil:bridge:session:"
BINDING_TTL_S = 7 * 24 * 3600
POLL_S = 0.25
# Connecting and each command: a Redis that is down refuses at once; one that is unreachable
# must not hold a request (or a join) longer than this.
TIMEOUT_S = 2.0
UNAVAILABLE = "session names are unavailable (the bridge cannot reach Redis); try again shortly"


def redis_client(url: str) -> Redis:
    """A client that fails fast and retries a dropped connection twice, quickly (a restarted
    Redis is found on the next call)."""
    return Redis.from_url(
        url,
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
    )


class RedisBindings:
    def __init__(self, url: str) -> None:
        self._redis = redis_client(url)

    async def bind(self, session_id: str, job_id: str) -> None:
        try:
            await self._redis.set(KEY_PREFIX + session_id, job_id, ex=BINDING_TTL_S)
        except RedisError as e:
            log.warning("binding session %r to job %s failed: %r", session_id, job_id, e)
            raise Unavailable(f"{UNAVAILABLE}: job {job_id} is not bound to it") from None

    async def get(self, session_id: str) -> str | None:
        try:
            value = await self._redis.get(KEY_PREFIX + session_id)
        except RedisError as e:
            log.warning("looking up session %r failed: %r", session_id, e)
            raise Unavailable(UNAVAILABLE) from None
        return value.decode() if isinstance(value, bytes) else None

    async def wait(self, session_id: str) -> str:
        while True:
            try:
                job_id = await self.get(session_id)
            except Unavailable:
                job_id = None  # Redis is away: keep waiting, it will be asked again
            if job_id is not None:
                return job_id
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        await self._redis.aclose()
