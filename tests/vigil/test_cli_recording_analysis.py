"""``vigil analyze-recording`` against a live camera recorded by the real detector and the real
analyzer, whose summary and answers come from the session's vLLM engine (a tiny random Gemma 3:
only their shape is checked); and how the command reads its times."""

from __future__ import annotations

import datetime
import json

import pytest

from tests import recorded
from tests.llm import SharedEngine
from tests.vigil.conftest import StartAnalyzer, StartDetector
from vigil.cli import main
from vigil.cli_common import UsageError
from vigil.cli_recording_analysis import time_range

pytestmark = pytest.mark.timeout(900)


def iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat()


def local(day: datetime.date, hour: int, minute: int = 0) -> float:
    return datetime.datetime.combine(day, datetime.time(hour, minute)).astimezone().timestamp()


def test_analyze_recording_prints_progress_the_summary_and_the_answers(
    start_detector: StartDetector,
    start_analyzer: StartAnalyzer,
    llm_engine: SharedEngine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    detector = start_detector(recording_segment_s=recorded.SEGMENT_S)
    detector_address = f"127.0.0.1:{detector.port}"
    camera = recorded.camera()
    with capsys.disabled():  # the camera's process writes to the real stderr
        camera.start()
    try:
        start, end = recorded.record(detector_address, camera.url())
    finally:
        camera.stop()
    analyzer = start_analyzer(
        engine=llm_engine, detector_address=detector_address, max_tokens=24, chat_max_tokens=12
    )
    address = f"127.0.0.1:{analyzer.port}"
    command = ["analyze-recording", "gate", "--from", iso(start), "--to", iso(end)]
    command += ["--max-frames", "2", "--ask", "What happened?", "--analyzer", address]
    assert main(command) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0].startswith("fetching the recording of gate from ")
    assert err[1].startswith("video ")
    assert ", job " in err[1]
    assert "[ 10%] initializing: Starting video analysis..." in err
    assert any(line.startswith("[100%] complete: ") for line in err)
    out = captured.out
    assert out.split("\n", 1)[0].strip()
    assert out.split("\n", 1)[0] != "(no summary)"
    assert "\nFrames: 2 sampled from " in out
    assert "\nQ: What happened?\nA: " in out

    assert main([*command, "--json", "-q", "--ask", "And then?"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    report = json.loads(captured.out)
    assert report["job"]["state"] == "succeeded"
    assert report["job"]["recording"]["source_id"] == "gate"
    assert report["job"]["recording"]["start"] == pytest.approx(start, abs=1e-3)
    assert [a["question"] for a in report["answers"]] == ["What happened?", "And then?"]
    assert all(a["text"].strip() for a in report["answers"])

    assert main([*command[:-4], "--analyzer", address, "-q"]) == 0
    capsys.readouterr()
    unknown = ["analyze-recording", "door", "--from", iso(start), "--to", iso(end)]
    assert main([*unknown, "--analyzer", address, "-q"]) == 1
    assert capsys.readouterr().err.startswith("vigil: NOT_FOUND: no recording of 'door' from ")


def test_clock_times_name_the_latest_range_that_is_over() -> None:
    day = datetime.date(2026, 3, 10)
    at_20 = local(day, 20)
    # Asked in the evening: this morning's 02:00 to 04:00.
    assert time_range("02:00", "04:00", None, now=at_20) == (local(day, 2), local(day, 4))
    # Asked at 01:00: that range is not over today, so it is last night's.
    yesterday = day - datetime.timedelta(days=1)
    at_1 = local(day, 1)
    assert time_range("02:00", "04:00", None, now=at_1) == (
        local(yesterday, 2),
        local(yesterday, 4),
    )
    # Across midnight: from 23:00 on the day to 01:00 on the next.
    next_day = day + datetime.timedelta(days=1)
    assert time_range("23:00", "01:00", day, now=at_20) == (local(day, 23), local(next_day, 1))
    assert time_range("02:00:30", "02:10", day) == (local(day, 2) + 30, local(day, 2, 10))
    # Other forms are those of `vigil recordings`.
    assert time_range("1700000000", "1700000600", None) == (1_700_000_000, 1_700_000_600)
    with pytest.raises(UsageError, match="not a time of day"):
        time_range("25:00", "26:00", day)
    with pytest.raises(UsageError, match="not a time"):
        time_range("soon", "later", day)
