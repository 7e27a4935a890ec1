"""Counters and latency samples of one client class, and how they are summarised."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none): simple and never invents a
    value no client observed."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50), 3),
        "p95": round(percentile(ordered, 95), 3),
        "p99": round(percentile(ordered, 99), 3),
        "max": round(ordered[-1], 3) if ordered else 0.0,
    }


@dataclasses.dataclass
class ClientStats:
    """What one client saw. Frame clients fill frames/latency/drops; job clients fill ``done``."""

    frames: int = 0
    bytes: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    # Drops as the frames themselves report them (their cumulative ``dropped`` field).
    dropped_reported: int = 0
    # Drops as gaps in the sequence numbers received.
    sequence_gaps: int = 0
    first_sequence: int = 0
    last_sequence: int = 0
    done: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)

    def frozen(self) -> ClientStats:
        """A copy that later frames do not change (the figures at the window's end)."""
        return dataclasses.replace(
            self, latencies_ms=list(self.latencies_ms), errors=Counter(self.errors)
        )

    def frame(self, sequence: int, size: int, latency_ms: float | None) -> None:
        if self.frames and sequence > self.last_sequence + 1:
            self.sequence_gaps += sequence - self.last_sequence - 1
        if not self.frames:
            self.first_sequence = sequence
        self.last_sequence = max(self.last_sequence, sequence)
        self.frames += 1
        self.bytes += size
        if latency_ms is not None:
            self.latencies_ms.append(latency_ms)


def class_report(name: str, clients: list[ClientStats], window_s: float) -> dict[str, Any]:
    """One client class, summed over its clients; rates are over the measured window."""
    frames = sum(c.frames for c in clients)
    errors: Counter[str] = Counter()
    for c in clients:
        errors.update(c.errors)
    window = max(window_s, 1e-9)
    return {
        "class": name,
        "clients": len(clients),
        "frames": frames,
        "frames_per_s": round(frames / window, 2),
        "frames_per_s_per_client": round(frames / window / len(clients), 2) if clients else 0.0,
        "megabytes_per_s": round(sum(c.bytes for c in clients) / window / 1e6, 3),
        "latency_ms": summary([x for c in clients for x in c.latencies_ms]),
        "dropped_reported": sum(c.dropped_reported for c in clients),
        "sequence_gaps": sum(c.sequence_gaps for c in clients),
        "completed": sum(c.done for c in clients),
        "errors": dict(sorted(errors.items())),
    }
