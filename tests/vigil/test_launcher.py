"""`vigil run` (what `make run` starts) brings every service up, keeps them up, and stops them.

A service that exits unexpectedly is restarted with backoff while the others keep their processes;
a crash loop is given up on; SIGTERM stops everything (also a service waiting in backoff) and
leaves no process behind. Every test runs the real launcher and the real services.
"""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from tests.vigil.launched import Launcher, http_get
from vigil import launcher as vigil_launcher

START_S = 120.0


def test_run_starts_all_services_and_stops_them(tmp_path: pathlib.Path) -> None:
    launcher = Launcher(tmp_path)
    try:
        launcher.eventually(launcher.all_serving, START_S, "every service SERVING")
        assert launcher.health() == {
            "bridge": "SERVING",
            "detector": "SERVING",
            "analyzer": "SERVING",
        }
        assert b"<html" in http_get(f"{launcher.url}/").lower()
        # The launcher polls health itself; give it the moment to see what we saw and say so.
        launcher.eventually(lambda: "Open http" in launcher.output, 10, "the URL printed")
        # Prometheus can scrape every service, and the launcher's own counts, on their ports.
        assert launcher.metric("detector_metrics", "vigil_incidents_total") == 0
        assert launcher.metric("analyzer_metrics", "vigil_analyzer_queue_length") == 0
        assert launcher.metric(
            "bridge", "vigil_bridge_http_requests_total", method="GET", status="200"
        )
        assert launcher.metric("run_metrics", "vigil_service_restarts_total", service="bridge") == 0
        assert launcher.state("analyzer") == "running"
        returncode = launcher.stop()
    finally:
        launcher.close()
    assert returncode == 0, launcher.output
    assert f"Open {launcher.url}/" in launcher.output


def test_a_killed_service_is_restarted_and_the_others_keep_running(tmp_path: pathlib.Path) -> None:
    launcher = Launcher(tmp_path, VIGIL_DETECTOR_BACKEND="none")
    try:
        launcher.eventually(lambda: "Open http" in launcher.output, START_S, "services up")
        before = launcher.services()
        assert set(before) == {"detector", "analyzer", "bridge"}, before
        os.kill(before["detector"], signal.SIGKILL)

        def detector_replaced() -> bool:
            now = launcher.services()
            return now.get("detector", before["detector"]) != before["detector"]

        launcher.eventually(detector_replaced, 60, "a new detector process")
        launcher.eventually(launcher.all_serving, START_S, "every service SERVING again")
        after = launcher.services()
        # Neither the analyzer nor the bridge was touched: an analysis and viewers survive.
        assert after["analyzer"] == before["analyzer"]
        assert after["bridge"] == before["bridge"]
        assert launcher.proc.poll() is None
        restarts = launcher.metric(
            "run_metrics", "vigil_service_restarts_total", service="detector"
        )
        assert restarts == 1
        assert (
            launcher.metric("run_metrics", "vigil_service_restarts_total", service="analyzer") == 0
        )
        assert "detector exited unexpectedly (killed by SIGKILL)" in launcher.output
        assert "restart 1 in 0.5 s" in launcher.output
        returncode = launcher.stop()
        left = launcher.leftovers()
    finally:
        launcher.close()
    assert returncode == 0, launcher.output
    assert left == []


def test_a_crash_loop_is_given_up_on_and_the_others_stay_up(tmp_path: pathlib.Path) -> None:
    # A sources file that does not exist: the detector stops at start with exit status 1, always.
    launcher = Launcher(
        tmp_path,
        VIGIL_DETECTOR_BACKEND="none",
        VIGIL_DETECTOR_SOURCES_FILE=str(tmp_path / "missing.toml"),
        VIGIL_RUN_MAX_RESTARTS="2",
        VIGIL_RUN_BACKOFF_S="0.1",
    )
    try:
        launcher.eventually(
            lambda: launcher.state("detector") == "failed", START_S, "detector failed"
        )
        assert (
            launcher.metric("run_metrics", "vigil_service_restarts_total", service="detector") == 2
        )
        assert launcher.output.count("detector exited unexpectedly (exit status 1)") == 3
        assert "crash loop, giving up on it" in launcher.output

        def others_serving() -> bool:
            health = launcher.health()
            return health["analyzer"] == "SERVING" and health["bridge"] == "SERVING"

        launcher.eventually(others_serving, START_S, "the analyzer and the bridge serving")
        assert launcher.health()["detector"] != "SERVING"
        assert set(launcher.services()) == {"analyzer", "bridge"}
        assert launcher.proc.poll() is None
        returncode = launcher.stop()
        left = launcher.leftovers()
    finally:
        launcher.close()
    # Stopped cleanly, but the exit status says that a service had been given up on.
    assert returncode == 1, launcher.output
    assert "given up on as crash loops: detector" in launcher.output
    assert left == []


def test_sigterm_stops_everything_while_a_service_waits_in_backoff(tmp_path: pathlib.Path) -> None:
    launcher = Launcher(
        tmp_path,
        VIGIL_DETECTOR_BACKEND="none",
        VIGIL_DETECTOR_SOURCES_FILE=str(tmp_path / "missing.toml"),
        VIGIL_RUN_BACKOFF_S="600",
        VIGIL_RUN_BACKOFF_MAX_S="600",
    )
    try:
        launcher.eventually(lambda: launcher.state("detector") == "backoff", START_S, "backoff")
        launcher.eventually(lambda: launcher.state("bridge") == "running", 5, "bridge running")
        returncode = launcher.stop()
        left = launcher.leftovers()
    finally:
        launcher.close()
    assert returncode == 0, launcher.output
    assert "restart 1 in 600.0 s" in launcher.output
    assert "started again" not in launcher.output
    assert left == []


def test_started_runs_services_as_processes_until_ready_and_stops_them(
    tmp_path: pathlib.Path,
) -> None:
    # What benchmarks and the load generator use: the same command as `vigil run`, no restarts.
    port = vigil_launcher.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {
        "VIGIL_DETECTOR_PORT": str(port),
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / "detector"),
    }
    with vigil_launcher.started(["detector_service"], env, ready_timeout_s=START_S) as pids:
        assert vigil_launcher.address("detector_service", env) == f"127.0.0.1:{port}"
        assert vigil_launcher.ready("detector_service", f"127.0.0.1:{port}")
        pid = pids["detector_service"]
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", b"detector_service"]
    assert not vigil_launcher.ready("detector_service", f"127.0.0.1:{port}")
    assert not pathlib.Path(f"/proc/{pid}").exists()  # stopped and reaped


def test_started_raises_with_the_cause_when_a_service_exits_during_start_up(
    tmp_path: pathlib.Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env |= {"VIGIL_DETECTOR_PORT": "not-a-port", "VIGIL_DETECTOR_DATA_DIR": str(tmp_path)}
    with (
        pytest.raises(RuntimeError, match=r"detector_service exited during start-up \(exit"),
        vigil_launcher.started(["detector_service"], env, ready_timeout_s=START_S),
    ):
        pass
