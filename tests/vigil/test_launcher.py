"""`vigil run` (what `make run` starts) brings every service up, and down again on SIGTERM."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_run_starts_all_services_and_stops_them(tmp_path: pathlib.Path) -> None:
    bridge = free_port()
    env = dict(
        os.environ,
        VIGIL_DETECTOR_PORT=str(free_port()),
        VIGIL_ANALYZER_PORT=str(free_port()),
        VIGIL_ANALYZER_DATA_DIR=str(tmp_path / "analyzer"),
        VIGIL_BRIDGE_PORT=str(bridge),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Read the launcher's output as it comes, so the pipe never fills and we can wait for a line.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        report = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{bridge}/health", timeout=2) as r:
                    report = json.load(r)
                if all(v == "SERVING" for v in report["services"].values()):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert report is not None, "the bridge never answered /health"
        assert report["services"] == {
            "bridge": "SERVING",
            "detector": "SERVING",
            "analyzer": "SERVING",
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{bridge}/", timeout=5) as r:
            assert b"<html" in r.read().lower()
        # The launcher polls health itself; give it the moment to see what we saw and say so.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("Open http" in line for line in lines):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=5)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert f"Open http://127.0.0.1:{bridge}/" in output
