"""The soak benchmark (``vigil bench soak``) in a few seconds: it runs the real services under the
load generator, and what they hold comes back once the load stops."""

from __future__ import annotations

import pytest

from vigil.bench import REGISTRY
from vigil.bench.soak import run

pytestmark = pytest.mark.timeout(120)


def test_a_short_soak_returns_to_baseline() -> None:
    assert "soak" in REGISTRY
    result = run({"duration": 3})
    assert result["failed_checks"] == [], result
    assert result["passed"] is True
    # The load really ran: viewers got frames and analyses completed.
    assert result["viewer_frames"] > 0
    assert result["analyses_completed"] > 0
    for name in ("detector_subscribers", "bridge_connections", "analyzer_jobs"):
        assert result[f"end_{name}"] == 0, name
    assert 0.5 < result["ratio"] <= 1.25
