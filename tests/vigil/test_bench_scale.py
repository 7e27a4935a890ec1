"""``vigil bench scale`` at a tiny size: one and two replicas of each service on a real PostgreSQL
and Redis, short leases; every figure is there (their values are the benchmark's business)."""

from __future__ import annotations

import json

from vigil.bench import REGISTRY, scale


def test_scale_reduced() -> None:
    assert "scale" in REGISTRY
    result = scale.run(
        {
            "analyses": 3,
            "viewers": 2,
            "sources": 2,
            "duration": 1.0,
            "warmup_s": 0.5,
            "analyzer_lease_s": 2.0,
            "detector_lease_s": 2.0,
        }
    )
    json.dumps(result)
    assert result["name"] == "scale"
    assert result["analyses_succeeded"] == {"one": 3, "two": 3}
    per_replica = result["analyses_per_replica"]
    assert per_replica["one"] == {"analyzer-1": 3}
    assert sum(per_replica["two"].values()) == 3
    assert set(per_replica["two"]) <= {"analyzer-1", "analyzer-2"}
    for row in ("analyses_per_s", "viewer_fps"):
        assert result[row]["one"] > 0
        assert result[row]["two"] > 0
        assert result[row]["two_over_one"] > 0
    assert result["ratio"] == result["analyses_per_s"]["two_over_one"]
    # Both bridges served viewers in the two-replica run.
    assert len(result["viewer_fps_per_bridge"]["two"]) == 2
    assert all(fps > 0 for fps in result["viewer_fps_per_bridge"]["two"].values())
    assert result["viewer_errors"] == {"one": {}, "two": {}}

    analyzer = result["analyzer_takeover"]
    assert "error" not in analyzer, analyzer
    assert analyzer["taken_over_by"] != analyzer["killed"]
    assert (analyzer["state"], analyzer["attempts"]) == ("succeeded", 2)
    assert analyzer["kill_to_running_s"] > 0
    assert isinstance(analyzer["lease_expiry_to_running_s"], float)

    detector = result["detector_takeover"]
    assert "error" not in detector, detector
    assert detector["sources_moved"] >= 1
    assert detector["kill_to_streaming_s"] > 0
    assert isinstance(detector["lease_expiry_to_streaming_s"], float)
    assert detector["goal"].startswith(("met: ", "missed: ")), detector["goal"]
