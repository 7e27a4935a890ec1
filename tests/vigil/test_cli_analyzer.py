"""``vigil analyze``, ``vigil chat`` and ``vigil jobs`` against the real analyzer; answers to chat
come from the session's real vLLM engine (a tiny random Gemma 3: its words are random, so only
their shape is checked)."""

from __future__ import annotations

import io
import json
import pathlib

import pytest

from tests.llm import SharedEngine
from tests.vigil import standin
from tests.vigil.conftest import StartAnalyzer, free_port
from vigil.cli import main
from vigil.sdk import AnalyzerClient, ClientOptions


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


@pytest.mark.timeout(900)  # its setup may load the session's engine
def test_chat_streams_answers(
    start_analyzer: StartAnalyzer,
    llm_engine: SharedEngine,
    video: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_analyzer(engine=llm_engine, token="t", max_tokens=8, chat_max_tokens=6)
    address = f"127.0.0.1:{server.port}"
    with AnalyzerClient(ClientOptions(address, token="t")) as client:
        uploaded = client.upload_video(video, start_analysis=True)
        assert uploaded.job is not None
        job_id = uploaded.job.id
        assert list(client.events(job_id))[-1].kind == "complete"

    assert main(["chat", job_id, "What happens?", "--analyzer", address, "--token", "t"]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    # The service wants the token: without it the call is refused (exit 1).
    assert main(["chat", job_id, "What happens?", "--analyzer", address]) == 1
    capsys.readouterr()

    # Without a question, one per line of input.
    monkeypatch.setattr("sys.stdin", io.StringIO("First?\n\nSecond?\n"))
    assert main(["chat", job_id, "--json", "--analyzer", address, "--token", "t"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["question"] for a in answers] == ["First?", "Second?"]
    # <eos> is ignored by the test engine: every answer is chat_max_tokens long.
    assert [a["completion_tokens"] for a in answers] == [6, 6]
    assert all(a["text"] for a in answers)
    assert all(0 <= t <= 2.5 for a in answers for t in a["cited_times_s"])


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
