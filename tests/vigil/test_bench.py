"""Smoke tests of the benchmarks in a reduced mode: the shape of what they print, and a ratio."""

from __future__ import annotations

import json
import pathlib

import pytest

from analyzer_service import media
from vigil.bench import REGISTRY, sampling, transport
from vigil.bench.__main__ import main


def test_registered() -> None:
    assert {"pipeline", "transport", "latency", "sampling", "chat"} <= set(REGISTRY)


def test_sampling_reduced(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "cache_dir", lambda: tmp_path)
    result = sampling.run({"minutes": [1, 2], "frames": 4, "repeat": 1})
    json.dumps(result)
    assert result["name"] == "sampling"
    assert result["frames"] == 4
    assert result["1min_s"] > 0
    assert result["2min_s"] > 0
    assert result["ratio"] > 0
    # Made once, then served from the cache; as long as asked for.
    assert sorted(p.name for p in tmp_path.glob("sampling-*.mp4")) == [
        "sampling-1min-720p-5fps-gop10s.mp4",
        "sampling-2min-720p-5fps-gop10s.mp4",
    ]
    info = media.probe(str(sampling.video(2)))
    assert info.duration_s == pytest.approx(120.0, abs=0.5)
    assert (info.width, info.height) == (1280, 720)


def test_transport_reduced() -> None:
    result = transport.run(
        {
            "viewers": [2],
            "formats": ["binary"],
            "fps": 30,
            "seconds": 0.5,
            "warmup_s": 0.5,
            "calibrate_s": 0.5,
            "in_process": True,
        }
    )
    json.dumps(result)
    assert result["name"] == "transport"
    row = result["configs"]["binary_2"]
    assert row["bridge"]["fps"] > 0
    assert row["bare"]["fps"] > 0
    assert row["bridge"]["errors"] == row["bare"]["errors"] == 0
    assert result["ratio"] == row["ratio"] > 0


def test_bench_cli_prints_one_json_object(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    REGISTRY["tiny"] = ("a stand-in", lambda: lambda options: {"name": "tiny", "ratio": 1.5})
    try:
        assert main(["tiny", "--json"]) == 0
    finally:
        del REGISTRY["tiny"]
    assert json.loads(capsys.readouterr().out) == {"name": "tiny", "ratio": 1.5}
