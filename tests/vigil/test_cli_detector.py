"""``vigil detect``, ``vigil sources`` and ``vigil incidents`` against the real detector."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import pytest

from detector_service.server import DetectorServer
from tests.vigil.conftest import free_port, stage_incident, wait_for_incident_subscribers
from vigil.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]


def vigil(*args: str) -> subprocess.Popen[str]:
    """``python -m vigil.cli`` as a user would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sources_ls_add_rm(detector_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "ls", "--detector", detector_address]) == 0
    out = capsys.readouterr().out.splitlines()
    headers = ["ID", "KIND", "MODE", "STATE", "SUBSCRIBERS", "FPS", "URI", "LAST", "ERROR"]
    assert out[0].split() == headers
    assert out[1].split()[:5] == ["default", "test_pattern", "on_demand", "idle", "0"]

    # Connection options work before the command name too.
    command = ["--detector", detector_address, "sources", "add", "lobby", "--kind", "file"]
    assert main([*command, "--uri", "/videos/lobby.mp4", "--loop", "--max-fps", "5"]) == 0
    assert capsys.readouterr().out == "added source lobby (file, on_demand, idle)\n"

    assert main(["sources", "ls", "--json", "--detector", detector_address]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in listed] == ["default", "lobby"]
    lobby = listed[1]
    assert (lobby["kind"], lobby["uri"], lobby["loop"], lobby["max_fps"]) == (
        "file",
        "/videos/lobby.mp4",
        True,
        5.0,
    )
    assert lobby["counters"]["subscribers"] == 0
    assert lobby["mode"] == "on_demand"
    assert "proto" not in lobby

    again = ["sources", "add", "lobby", "--kind", "test_pattern", "--detector", detector_address]
    assert main(again) == 1
    assert "vigil: ALREADY_EXISTS: " in capsys.readouterr().err
    assert main(["sources", "add", "clip", "--kind", "file", "--detector", detector_address]) == 1
    assert "INVALID_ARGUMENT: a file source needs the file's path" in capsys.readouterr().err

    assert main(["sources", "rm", "lobby", "--json", "--detector", detector_address]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "lobby"
    assert main(["sources", "rm", "lobby", "--detector", detector_address]) == 1
    assert capsys.readouterr().err == "vigil: NOT_FOUND: no source 'lobby'\n"


def test_sources_add_with_a_mode(detector_address: str, capsys: pytest.CaptureFixture[str]) -> None:
    add = ["sources", "add", "--detector", detector_address, "--kind", "test_pattern"]
    # The test pattern is on demand unless told: always starts capturing with nobody watching.
    assert main([*add, "watched", "--mode", "always", "--max-fps", "5"]) == 0
    assert capsys.readouterr().out == "added source watched (test_pattern, always, starting)\n"
    assert main(["sources", "ls", "--json", "--detector", detector_address]) == 0
    modes = {
        s["id"]: (s["mode"], s["counters"]["subscribers"])
        for s in json.loads(capsys.readouterr().out)
    }
    assert modes == {"default": ("on_demand", 0), "watched": ("always", 0)}
    with pytest.raises(SystemExit) as usage:
        main([*add, "x", "--mode", "sometimes"])
    assert usage.value.code == 2
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_environment_names_the_service(
    detector_address: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DETECTOR_ADDRESS", detector_address)
    assert main(["sources", "ls", "--json"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["default"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["sources"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        main(["sources", "add", "x", "--kind", "pigeon"])
    assert usage.value.code == 2
    assert "invalid choice: 'pigeon'" in capsys.readouterr().err
    assert main(["detect", "/nonexistent/clip.mp4"]) == 2
    assert "no such video file: /nonexistent/clip.mp4" in capsys.readouterr().err


def test_unreachable_detector_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main(["sources", "ls", "--detector", address, "--timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"vigil: cannot reach the detector service at {address}: ")
    assert "Is it running?" in err


def test_detect_prints_every_frame_and_writes_the_annotated_video(
    detector_address: str,
    video: pathlib.Path,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "annotated.mp4"
    assert main(["detect", str(video), "--out", str(out), "--detector", detector_address]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 15
    assert lines[0] == "frame 0 [00:00.000]: nothing"
    assert lines[14] == "frame 14 [00:01.400]: nothing"
    assert f"15 frames, 0 detections (0 weapons), 0 frame errors; wrote 15 frames to {out}" in (
        captured.err
    )
    written = cv2.VideoCapture(str(out))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        320,
        240,
    )
    written.release()

    # A detector that is not there fails the stream while frames are being read.
    nowhere = f"127.0.0.1:{free_port()}"
    assert main(["detect", str(video), "--json", "--detector", nowhere]) == 3
    assert "cannot reach the detector service" in capsys.readouterr().err
    command = ["detect", str(video), "--json", "--max-frames", "4", "--source-id", "cam"]
    assert main([*command, "--detector", detector_address]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["sequence"] for r in records] == [0, 1, 2, 3]
    assert {r["source_id"] for r in records} == {"cam"}
    assert [r["video_time_s"] for r in records] == [0.0, 0.1, 0.2, 0.3]
    assert {(r["width"], r["height"]) for r in records} == {(320, 240)}
    assert all(r["detections"] == [] and r["error"] is None for r in records)
    assert "annotated_jpeg" not in records[0]


def test_incidents_history(detector: DetectorServer, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{detector.port}"
    assert main(["incidents", "--detector", address]) == 0
    assert capsys.readouterr().out == "no incidents\n"
    stage_incident(detector, "door", close=True)
    stage_incident(detector, "hall", close=False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert main(["incidents", "--json", "--detector", address]) == 0
        found = json.loads(capsys.readouterr().out)
        if len(found) == 2:
            break
        time.sleep(0.05)
    assert [(i["source_id"], i["class_name"]) for i in found] == [
        ("hall", "knife"),
        ("door", "knife"),
    ]
    assert found[0]["closed_at"] is None
    assert found[1]["closed_at"] > found[1]["opened_at"]
    assert main(["incidents", "--source", "door", "--limit", "1", "--detector", address]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["OPENED", "CLOSED", "SOURCE", "CLASS", "PEAK", "ID"]
    assert table[1].split()[2:5] == ["door", "knife", "0.90"]
    assert len(table) == 2


def test_incidents_follow_streams_json_lines_until_interrupted(detector: DetectorServer) -> None:
    process = vigil("incidents", "--follow", "--json", "--detector", f"127.0.0.1:{detector.port}")
    try:
        wait_for_incident_subscribers(detector)
        stage_incident(detector, "gate", close=True)
        assert process.stdout is not None
        events = [json.loads(process.stdout.readline()) for _ in range(2)]
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 130
    finally:
        process.kill()
        process.wait()
    assert [e["kind"] for e in events] == ["opened", "closed"]
    assert {e["incident"]["source_id"] for e in events} == {"gate"}
    assert process.stderr is not None
    assert "vigil: interrupted" in process.stderr.read()


def test_the_installed_command_reports_an_unreachable_service() -> None:
    process = vigil("sources", "ls", "--detector", f"127.0.0.1:{free_port()}")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 3
    assert out == ""
    assert "cannot reach the detector service" in err
