"""Capped exponential backoff with jitter: the one retry schedule every Vigil loop uses.

A loop that reconnects (a camera, a live subscription, a webhook) asks ``next()`` how long to wait
before its next try and calls ``reset()`` once a try succeeds. The caller sleeps, so the same
schedule serves threads (``Event.wait``) and coroutines (``asyncio.sleep``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial_s``, then ``factor`` times longer each try, never above ``max_s``.

    ``jitter`` takes up to that fraction off each delay, so that many clients which failed
    together (a service restart) do not all come back in the same instant.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    _current: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")
        self._current = self.initial_s

    def next(self) -> float:
        """The delay before the next try; the one after it grows."""
        delay = self._current * random.uniform(1.0 - self.jitter, 1.0)
        self._current = min(self._current * self.factor, self.max_s)
        return delay

    def peek(self) -> float:
        """The next delay without jitter, without advancing (for logs: "retrying in 4 s")."""
        return self._current

    def reset(self) -> None:
        """Back to ``initial_s``, after a try that worked."""
        self._current = self.initial_s
