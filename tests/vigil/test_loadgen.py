"""The load generator against real services: bounds, its report, and its figures set against the
services' own counters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from vigil import cli_loadtest
from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as apb_grpc
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc
from vigil.loadgen import Scenario, ScenarioError, run_scenario, spawn
from vigil.loadgen.scenario import host_of, is_loopback


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("127.0.0.1:50051", "127.0.0.1"),
        ("http://localhost:8000", "localhost"),
        ("[::1]:50051", "::1"),
        ("https://example.com/base", "example.com"),
    ],
)
def test_host_of(address: str, host: str) -> None:
    assert host_of(address) == host


def test_only_loopback_unless_allowed() -> None:
    assert is_loopback("127.0.0.2")
    assert is_loopback("::1")
    assert not is_loopback("10.1.2.3")
    with pytest.raises(ScenarioError, match="allow-remote"):
        Scenario(detector="10.1.2.3:50051").validate()
    with pytest.raises(ScenarioError, match="allow-remote"):
        Scenario(bridge="http://192.0.2.7:8000").validate()
    Scenario(detector="10.1.2.3:50051", allow_remote=True).validate()


def test_cli_refuses_remote_targets(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_loadtest.main(["loadtest", "--detector", "192.0.2.1:50051"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change",
    [
        {"duration_s": 0.0},
        {"duration_s": 10_000.0},
        {"viewers": 100_000},
        {"slow_share": 1.5},
        {"subscribers": 1, "slow_subscribers": 2},
    ],
)
def test_scenarios_are_bounded(change: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError):
        Scenario(**change).validate()


@pytest.fixture(scope="module")
def services() -> Iterator[spawn.Services]:
    with spawn.processes(viewers=8) as running:
        yield running


async def bridge_counter(bridge: str, name: str, source_id: str) -> float:
    """A counter of the bridge's for one source, scraped here, apart from the load generator."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{bridge}/metrics", timeout=5)).text
    pattern = rf'^vigil_bridge_{name}_total\{{source="{re.escape(source_id)}"\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


async def succeeded_jobs(analyzer: str) -> set[str]:
    async with grpc.aio.insecure_channel(analyzer) as channel:
        stub = apb_grpc.AnalyzerServiceStub(channel)
        reply = await stub.ListJobs(apb.ListJobsRequest(page_size=500), timeout=5)
    return {job.id for job in reply.jobs if job.state == apb.JOB_STATE_SUCCEEDED}


async def test_report_agrees_with_service_counters(services: spawn.Services) -> None:
    succeeded_before = await succeeded_jobs(services.analyzer)
    scenario = Scenario(
        detector=services.detector,
        analyzer=services.analyzer,
        bridge=services.bridge,
        duration_s=4.0,
        detect_streams=1,
        detect_fps=10.0,
        subscribers=3,
        slow_subscribers=1,
        viewers=3,
        slow_share=1 / 3,
        slow_interval_s=0.5,
        jobs=1,
        source_fps=30.0,
    )
    report = await run_scenario(scenario, pids=services.pids, keep_sources=True)
    classes = report["classes"]
    window = report["window_s"]

    # The services' own view, asked for independently of the load generator.
    async with grpc.aio.insecure_channel(services.detector) as channel:
        stub = dpb_grpc.DetectorServiceStub(channel)
        sub = (
            await stub.GetSource(dpb.GetSourceRequest(source_id=report["sources"]["subscribers"]))
        ).source
        ws = (
            await stub.GetSource(dpb.GetSourceRequest(source_id=report["sources"]["viewers"]))
        ).source
        for source_id in report["sources"].values():
            await stub.RemoveSource(dpb.RemoveSourceRequest(source_id=source_id))

    # Rates are the benchmark's business (a loaded host lowers them); what must hold at any speed
    # is pacing (never above what was asked) and accounting (every frame received or counted).
    assert 0 < classes["detect"]["frames"] <= 10.0 * window * 1.2 + 2
    assert classes["detect"]["latency_ms"]["p50"] > 0

    # Subscribers: what each received plus what the detector dropped for it is everything it
    # published, less a few frames in flight at the end (and, counted independently after the
    # run, those published after the window: the clients' leaving and the source's linger).
    published = sub.counters.frames_published
    assert 0 < published <= 30.0 * window * 1.25
    received = classes["subscriber"]["frames"] + classes["subscriber_slow"]["frames"]
    unaccounted = 3 * published - received - sub.counters.frames_dropped
    assert 0 <= unaccounted <= 3 * (12 + 0.5 * 30)
    assert 0 <= report["agreement"]["subscribers"]["unaccounted"] <= 3 * 8
    mine = report["service_counters"]["detector"][report["sources"]["subscribers"]]
    assert mine["frames_dropped"] == sub.counters.frames_dropped
    # Every frame a subscriber missed is one its later frames owned up to, and the drops they
    # reported never exceed what the detector counted; the slow one lost most frames.
    fast_subs = classes["subscriber"]
    assert fast_subs["sequence_gaps"] == fast_subs["dropped_reported"]
    slow = classes["subscriber_slow"]
    assert slow["frames"] <= window / 0.5 + 2
    assert 0 < slow["dropped_reported"] <= sub.counters.frames_dropped
    assert slow["sequence_gaps"] == slow["dropped_reported"]
    assert fast_subs["dropped_reported"] + slow["dropped_reported"] <= sub.counters.frames_dropped

    # Viewers: the same for the bridge's skips; the bridge's count of frames sent covers what they
    # received plus what sat in the slow viewer's socket buffers.
    fast = classes["viewer_fast"]
    assert 0 < fast["frames"] <= 2 * ws.counters.frames_published
    assert fast["sequence_gaps"] == fast["dropped_reported"]
    viewers = report["agreement"]["viewers"]
    assert 0 <= viewers["in_flight"] <= 40
    assert classes["viewer_slow"]["frames"] <= window / 0.5 + 2
    # The bridge's counters, scraped here after the run: they cover what the report says it sent
    # and what the viewers received, and every drop the viewers were told of is one it counted.
    sent = await bridge_counter(services.bridge, "frames_sent", report["sources"]["viewers"])
    dropped = await bridge_counter(services.bridge, "frames_dropped", report["sources"]["viewers"])
    assert sent >= viewers["sent_by_bridge"] >= viewers["received"] > 0
    assert viewers["dropped_reported_by_frames"] <= viewers["dropped_by_bridge"] <= dropped
    assert dropped > 0  # the slow viewer cannot keep up with 30 fps

    # Analyses complete, and each one the report counts is a job the analyzer says succeeded (one
    # started near the window's end may finish after it, uncounted); with no model configured
    # every chat is refused, and counted as such.
    completed = classes["analysis"]["completed"]
    assert completed >= 1
    new_jobs = len(await succeeded_jobs(services.analyzer) - succeeded_before)
    assert completed <= new_jobs <= completed + scenario.jobs
    assert classes["chat"]["errors"].get("FAILED_PRECONDITION", 0) >= 1
    assert report["errors"] == {k: v for c in classes.values() for k, v in c["errors"].items()}
    # Each service is a process of its own (started as `vigil run` starts it), watched apart.
    assert set(report["resources"]) == {"detector", "analyzer", "bridge"}
    for usage in report["resources"].values():
        assert usage["rss_mb"] > 0
        assert usage["threads"] > 1
        assert usage["open_fds"] > 0


def test_cli_json_report(services: spawn.Services, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "loadtest",
        "--detector", services.detector,
        "--analyzer", services.analyzer,
        "--bridge", services.bridge,
        "--duration", "1",
        "--subscribers", "1",
        "--viewers", "2",
        "--slow-share", "0.5",
        "--format", "json",
        "--json",
    ]  # fmt: skip
    assert cli_loadtest.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {
        "scenario",
        "window_s",
        "classes",
        "errors",
        "resources",
        "service_counters",
        "agreement",
    }
    assert set(report["classes"]) == {"detect", "subscriber", "viewer_fast", "viewer_slow"}
    for figures in report["classes"].values():
        assert set(figures["latency_ms"]) == {"count", "p50", "p95", "p99", "max"}
        assert {"frames_per_s", "dropped_reported", "sequence_gaps", "errors"} <= set(figures)
    assert report["classes"]["viewer_fast"]["frames"] > 0
    assert report["errors"] == {}


def test_table_report(services: spawn.Services, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["loadtest", "--detector", services.detector, "--bridge", services.bridge]
    args += ["--duration", "0.5", "--viewers", "1", "--slow-share", "0", "--subscribers", "0"]
    assert cli_loadtest.main(args) == 0
    out = capsys.readouterr().out
    assert "viewer_fast" in out
    assert "p99 ms" in out
