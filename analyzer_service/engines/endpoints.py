"""Which of several vLLM servers takes the next request: the least busy of those up.

A server is busy by the requests it has outstanding here (sent and not yet finished), which
tracks its real load as long as this analyzer is not its only client. A server that refused a
connection, answered 5xx or timed out is down for a backoff delay (``vigil.core.backoff``),
growing while it keeps failing; the next request after the delay tries it again, and a success
or a passing health check puts it back at once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from vigil.core.backoff import Backoff

# A server that failed is left alone this long at first, doubling up to the cap while it fails.
DOWN_INITIAL_S = 1.0
DOWN_MAX_S = 30.0


@dataclass
class Endpoint:
    """One server: its API root and what this process knows of it."""

    url: str
    outstanding: int = 0
    # When it was last given a request, to break ties between equally busy servers in turn.
    last_picked: int = 0
    # Monotonic time before which it is down; 0: up.
    down_until: float = 0.0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(initial_s=DOWN_INITIAL_S, max_s=DOWN_MAX_S)
    )

    def up(self, now: float) -> bool:
        return now >= self.down_until


class Endpoints:
    """The servers behind one engine, in the order configured."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("the vLLM HTTP engine needs at least one server URL")
        if len(set(urls)) != len(urls):
            raise ValueError(f"a vLLM server is named twice in {list(urls)}")
        self.all = [Endpoint(url) for url in urls]
        self._picks = itertools.count(1)

    def __len__(self) -> int:
        return len(self.all)

    def up_count(self) -> int:
        now = time.monotonic()
        return sum(1 for endpoint in self.all if endpoint.up(now))

    def candidates(self) -> Iterator[Endpoint]:
        """The servers to try for one request, best first, each at most once: those up by fewest
        outstanding requests (then the longest unused), chosen afresh before each try so that
        a failover goes where the load is lowest now. When none is up, the one due back first
        is tried anyway: a request is never refused without a try."""
        tried: set[str] = set()
        while True:
            now = time.monotonic()
            up = [e for e in self.all if e.up(now) and e.url not in tried]
            if not up and not tried:
                up = [min(self.all, key=lambda e: e.down_until)]
            if not up:
                return
            best = min(up, key=lambda e: (e.outstanding, e.last_picked))
            best.last_picked = next(self._picks)
            tried.add(best.url)
            yield best

    @staticmethod
    def failed(endpoint: Endpoint) -> None:
        """It refused, timed out or answered 5xx: down for its next backoff delay."""
        endpoint.down_until = time.monotonic() + endpoint.backoff.next()

    @staticmethod
    def worked(endpoint: Endpoint) -> None:
        """It answered: up, and its backoff starts over."""
        endpoint.down_until = 0.0
        endpoint.backoff.reset()
