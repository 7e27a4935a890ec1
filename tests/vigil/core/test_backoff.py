"""The shared retry schedule: grows, caps, jitters downwards only, resets."""

from __future__ import annotations

import pytest

from vigil.core.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_starts_again() -> None:
    backoff = Backoff(initial_s=1.0, max_s=5.0, jitter=0.0)
    assert [backoff.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_jitter_only_shortens_a_delay() -> None:
    backoff = Backoff(initial_s=1.0, max_s=1.0, jitter=0.5)
    delays = [backoff.next() for _ in range(200)]
    assert all(0.5 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("initial", "maximum", "factor", "jitter"),
    [(0.0, 1.0, 2.0, 0.1), (2.0, 1.0, 2.0, 0.1), (1.0, 2.0, 0.5, 0.1), (1.0, 2.0, 2.0, 1.0)],
)
def test_nonsense_schedules_are_refused(
    initial: float, maximum: float, factor: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial_s=initial, max_s=maximum, factor=factor, jitter=jitter)
