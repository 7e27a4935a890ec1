"""``vigil analyze``, ``vigil chat`` and ``vigil jobs`` against the real analyzer (and, for
answers to chat, which the service does not give yet, a stand-in speaking its contract)."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from tests.vigil import standin
from tests.vigil.conftest import LoopThread, StartAnalyzer, free_port
from vigil.cli import main


def test_analyze_a_failing_job_exits_1_with_its_error(
    start_analyzer: StartAnalyzer, video: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{start_analyzer(engine=standin.failing_engine()).port}"
    assert main(["analyze", str(video), "--analyzer", address]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    size = video.stat().st_size / 2**20
    assert err[0] == f"uploading clip.mp4 [{'#' * 30}] 100% {size:.1f}/{size:.1f} MiB"
    assert err[1].startswith("video ")
    assert err[2:4] == [
        "[ 10%] initializing: Starting video analysis...",
        "[ 25%] extracting frames: Extracting frames from video...",
    ]
    assert "       scripted/model is reading " in captured.err
    assert err[-1] == "vigil: analysis failed: MODEL_FAILED: the model ran out of memory"
    assert captured.out == ""

    assert main(["analyze", str(video), "--json", "-q", "--analyzer", address]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["video"]["width"] == 320
    assert report["job"]["state"] == "failed"
    assert report["job"]["error"]["code"] == "MODEL_FAILED"
    assert captured.err == "vigil: analysis failed: MODEL_FAILED: the model ran out of memory\n"

    assert main(["jobs", "ls", "--analyzer", address]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["ID", "STATE", "DONE", "VIDEO", "CREATED", "ERROR"]
    assert len(rows) == 3
    assert rows[1].split()[1] == "failed"
    assert rows[1].split()[3] == "clip.mp4"
    assert rows[1].split()[-1] == "MODEL_FAILED"
    assert main(["jobs", "ls", "--state", "succeeded", "--analyzer", address]) == 0
    assert capsys.readouterr().out == "no jobs\n"

    job_id = report["job"]["id"]
    assert main(["jobs", "show", "nope", "--analyzer", address]) == 1
    assert capsys.readouterr().err == "vigil: NOT_FOUND: no job 'nope'\n"
    assert main(["jobs", "cancel", job_id, "--json", "--analyzer", address]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "failed"


def test_chat_without_a_model_or_a_job_exits_1(
    analyzer_address: str, video: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(video), "--no-follow", "-q", "--analyzer", analyzer_address]) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["chat", job_id, "What happens?", "--analyzer", analyzer_address]) == 1
    assert capsys.readouterr().err.startswith("vigil: MODEL_NOT_CONFIGURED: No language model")
    assert main(["chat", "nope", "Anyone?", "--analyzer", analyzer_address]) == 1
    assert capsys.readouterr().err == "vigil: NOT_FOUND: no job 'nope'\n"


def test_analyze_with_a_model_prints_the_result(
    start_analyzer: StartAnalyzer, video: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_analyzer(engine=standin.ScriptedEngine())
    address = f"127.0.0.1:{server.port}"
    command = ["analyze", str(video), "--policy", "uniform", "--max-frames", "4"]
    assert main([*command, "--analyzer", address]) == 0
    captured = capsys.readouterr()
    assert "[ 75%] inference: scripted/model analyzing 4 frames..." in captured.err
    assert "[100%] complete: " in captured.err
    out = captured.out.splitlines()
    assert out[0] == "A square moves right at [00:01]."
    assert "Frames: 4 sampled from 00:00 to 00:01" in out
    assert any(line.startswith("Model: scripted/model; ") for line in out)

    assert main([*command, "--json", "--quiet", "--analyzer", address]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    job = json.loads(captured.out)["job"]
    assert job["state"] == "succeeded"
    assert job["result"]["summary"].strip() == "A square moves right at [00:01]."
    assert len(job["result"]["frames"]) == 4

    assert main(["analyze", str(video), "--no-follow", "-q", "--analyzer", address]) == 0
    started = capsys.readouterr().out.strip()
    assert main(["jobs", "show", started, "--json", "--analyzer", address]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == started


def test_chat_streams_answers(
    loop_thread: LoopThread,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = standin.Record()
    server, port = loop_thread.run(standin.serve(analyzer=standin.Analyzer(record)))
    address = f"127.0.0.1:{port}"
    try:
        assert main(["chat", "j1", "What happens?", "--analyzer", address, "--token", "t"]) == 0
        assert capsys.readouterr().out == "A white square crosses at [00:01].\n(cites 00:01)\n"
        assert record.metadata["Chat"][-1]["authorization"] == "Bearer t"

        # Without a question, one per line of input.
        monkeypatch.setattr("sys.stdin", io.StringIO("First?\n\nSecond?\n"))
        assert main(["chat", "j1", "--json", "--analyzer", address]) == 0
        answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [a["question"] for a in answers] == ["First?", "Second?"]
        assert {a["text"] for a in answers} == {"A white square crosses at [00:01]."}
        assert answers[0]["cited_times_s"] == [1.0]
        assert answers[0]["completion_tokens"] == 3
    finally:
        loop_thread.run(server.stop(0))


def test_unreachable_analyzer_exits_3(
    video: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert main(["analyze", str(video), "-q", "--analyzer", address]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"vigil: cannot reach the analyzer service at {address}: ")
    assert main(["chat", "j1", "Hello?", "--analyzer", address]) == 3


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (
        [],
        ["detect"],
        ["sources"],
        ["sources", "add"],
        ["incidents"],
        ["analyze"],
        ["chat"],
        ["jobs", "ls"],
        ["run"],
        ["bench"],
    ):
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: vigil"), command
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = capsys.readouterr().out
    assert "--json" in out
    assert "3 service unavailable" in out
    assert "--analyzer ADDR" in out
