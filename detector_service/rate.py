"""A rate of events (frames in, frames out) over a short sliding window."""

from __future__ import annotations

import time


class Rate:
    """Events per second over a sliding window of the last two seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self.times: list[float] = []

    def tick(self) -> None:
        now = time.monotonic()
        self.times.append(now)
        if self.times[0] < now - 2 * self.window_s:
            self.times = [t for t in self.times if t >= now - self.window_s]

    def value(self) -> float:
        now = time.monotonic()
        recent = [t for t in self.times if t >= now - self.window_s]
        return len(recent) / self.window_s
