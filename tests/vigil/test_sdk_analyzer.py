"""The SDK's analyzer clients, blocking and asyncio, against the real analyzer service.

Chat answers come from the session's real vLLM engine (a tiny random Gemma 3). A scripted language
model plugged into the real service makes jobs fail or hold on demand, which a real one cannot be
made to do; without one, a job is only held to the contract (its outcome is the service's choice).
"""

from __future__ import annotations

import io
import pathlib

import pytest

from tests.llm import SharedEngine
from tests.vigil.conftest import StartAnalyzer
from tests.vigil.standin import ScriptedEngine, failing_engine
from vigil.core.errors import InvalidInput, ModelNotConfigured, NotFound
from vigil.core.upload_protocol import CHUNK_BYTES
from vigil.sdk import (
    AnalysisEvent,
    AnalysisOptions,
    AnalyzerClient,
    AsyncAnalyzerClient,
    Job,
    UploadResult,
)


def test_upload_analyse_and_follow_a_failing_job(
    start_analyzer: StartAnalyzer, video: pathlib.Path
) -> None:
    server = start_analyzer(engine=failing_engine())
    progress: list[tuple[int, int]] = []
    with AnalyzerClient(f"127.0.0.1:{server.port}") as client:
        uploaded = client.upload_video(
            video, start_analysis=True, progress=lambda sent, total: progress.append((sent, total))
        )
        assert isinstance(uploaded, UploadResult)
        size = video.stat().st_size
        assert progress == [(0, size), (size, size)]
        assert (uploaded.video.name, uploaded.video.size) == ("clip.mp4", size)
        assert (uploaded.video.width, uploaded.video.height) == (320, 240)
        assert uploaded.video.duration_s == pytest.approx(1.5, abs=0.2)
        assert uploaded.video.uploaded_at is not None
        assert uploaded.job is not None
        job_id = uploaded.job.id

        events = list(client.events(job_id))
        assert all(isinstance(e, AnalysisEvent) for e in events)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert {e.job_id for e in events} == {job_id}
        assert [(e.kind, e.stage, e.percent) for e in events[:2]] == [
            ("progress", "initializing", 10.0),
            ("progress", "extracting_frames", 25.0),
        ]
        assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
        last = events[-1]
        assert last.kind == "error"
        assert last.error is not None
        assert (last.error.code, last.message) == ("MODEL_FAILED", "the model ran out of memory")
        assert last.proto.error.code == "MODEL_FAILED"

        # Resuming after the second event replays only the rest.
        resumed = list(client.events(job_id, after_sequence=2))
        assert [e.sequence for e in resumed] == [e.sequence for e in events[2:]]

        job = client.get_job(job_id)
        assert isinstance(job, Job)
        assert (job.state, job.finished, job.attempts) == ("failed", True, 1)
        assert job.error == last.error
        assert job.video is not None
        assert job.video.id == uploaded.video.id
        assert job.result is None
        # Cancelling a finished job changes nothing.
        assert client.cancel_job(job_id).state == "failed"

        again = client.start_analysis(
            uploaded.video.id, AnalysisOptions(sampling_policy="uniform", max_frames=4)
        )
        assert again.state in ("queued", "running")
        assert (again.options.sampling_policy, again.options.max_frames) == ("uniform", 4)
        assert list(client.events(again.id))[-1].kind == "error"

        page = client.list_jobs()
        assert [j.id for j in page.items] == [again.id, job_id]
        assert [j.id for j in client.list_jobs(state="failed").items] == [again.id, job_id]
        assert client.list_jobs(state="succeeded").items == ()
        first = client.list_jobs(page_size=1)
        assert [j.id for j in first.items] == [again.id]
        rest = client.list_jobs(page_size=1, page_token=first.next_page_token)
        assert [j.id for j in rest.items] == [job_id]


def test_a_job_without_a_model_keeps_to_the_contract(
    analyzer_address: str, video: pathlib.Path
) -> None:
    with AnalyzerClient(analyzer_address) as client:
        uploaded = client.upload_video(video, start_analysis=True)
        assert uploaded.job is not None
        events = list(client.events(uploaded.job.id))
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
        percents = [e.percent for e in events if e.kind == "progress"]
        assert percents == sorted(percents)
        job = client.get_job(uploaded.job.id)
        if events[-1].kind == "complete":
            assert job.state == "succeeded"
            assert job.result is not None
            assert job.result == events[-1].result
        else:
            assert job.state == "failed"
            assert job.error == events[-1].error
        with pytest.raises(ModelNotConfigured) as refused:
            list(client.chat(job.id, "What happens?"))
        assert refused.value.code == "MODEL_NOT_CONFIGURED"


def test_unknown_ids_and_bad_uploads(analyzer_address: str, tmp_path: pathlib.Path) -> None:
    with AnalyzerClient(analyzer_address) as client:
        with pytest.raises(NotFound, match="no job 'nope'"):
            client.get_job("nope")
        with pytest.raises(NotFound):
            client.start_analysis("no-such-video")
        with pytest.raises(NotFound):
            list(client.events("nope"))
        with pytest.raises(InvalidInput, match="unknown job state"):
            client.list_jobs(state="sleeping")
        with pytest.raises(InvalidInput, match="cannot read"):
            client.upload_video(tmp_path / "missing.mp4")

        # Not a video: the chunks go out 1 MiB at a time, then the service refuses it.
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(b"\0" * (2 * CHUNK_BYTES + 1000))
        progress: list[int] = []
        with pytest.raises(InvalidInput) as refused:
            client.upload_video(junk, progress=lambda sent, total: progress.append(sent))
        assert refused.value.code == "INVALID_ARGUMENT"
        assert progress == [0, CHUNK_BYTES, 2 * CHUNK_BYTES, 2 * CHUNK_BYTES + 1000]


async def test_a_refused_header_is_reported_as_itself(
    analyzer_address: str, tmp_path: pathlib.Path
) -> None:
    # A header with options over the limits, and a file large enough that chunks would be in
    # flight when the refusal comes: the reason must arrive every time, never as INTERNAL.
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (8 * CHUNK_BYTES))
    options = AnalysisOptions(max_frames=100_000)
    with AnalyzerClient(analyzer_address) as client:
        for _ in range(10):
            with pytest.raises(InvalidInput, match="max_frames 100000 is over the limit"):
                client.upload_video(big, start_analysis=True, options=options)
    async with AsyncAnalyzerClient(analyzer_address) as aclient:
        for _ in range(30):
            with pytest.raises(InvalidInput, match="max_frames 100000 is over the limit"):
                await aclient.upload_video(big, start_analysis=True, options=options)
        # The service is unharmed and nothing was stored.
        assert (await aclient.list_jobs()).items == ()


def test_upload_from_a_file_object(analyzer_address: str, video: pathlib.Path) -> None:
    data = video.read_bytes()
    stream = io.BytesIO(b"skipped" + data)
    stream.seek(len(b"skipped"))
    with AnalyzerClient(analyzer_address) as client:
        result = client.upload_video(stream, name="from-memory.mp4")
    assert (result.video.name, result.video.size, result.job) == (
        "from-memory.mp4",
        len(data),
        None,
    )


async def test_async_client_with_a_model_completes_and_cancels(
    start_analyzer: StartAnalyzer, video: pathlib.Path
) -> None:
    engine = ScriptedEngine()
    server = start_analyzer(engine=engine)
    async with AsyncAnalyzerClient(f"127.0.0.1:{server.port}") as client:
        await client.wait_until_ready(5)
        uploaded = await client.upload_video(
            video, options=AnalysisOptions(prompt="Describe it."), start_analysis=True
        )
        assert uploaded.job is not None
        events = [e async for e in client.events(uploaded.job.id)]
        kinds = [e.kind for e in events]
        assert kinds[:2] == ["progress"] * 2
        assert "thinking" in kinds
        assert kinds[-1] == "complete"
        thinking = events[kinds.index("thinking")]
        assert thinking.frame_count > 0
        result = events[-1].result
        assert result is not None
        assert result.model == "scripted/model"
        assert "square moves right" in result.summary
        assert result.frames
        assert events[-1].timings is not None

        job = await client.get_job(uploaded.job.id)
        assert (job.state, job.stage, job.percent) == ("succeeded", "complete", 100.0)
        assert job.result is not None
        assert job.result.summary == result.summary
        assert job.options.prompt == "Describe it."
        assert [j.id for j in (await client.list_jobs()).items] == [job.id]

        engine.block = True
        held = await client.start_analysis(uploaded.video.id)
        follow = client.events(held.id)
        async for event in follow:
            if event.kind == "thinking":
                break
        cancelled = await client.cancel_job(held.id)
        assert cancelled.state == "cancelled"
        rest = [e async for e in follow]
        assert rest[-1].kind == "error"
        assert rest[-1].error is not None
        assert rest[-1].error.code == "CANCELLED"
        with pytest.raises(NotFound):
            await client.cancel_job("nope")


@pytest.mark.timeout(900)  # its setup may load the session's engine
def test_chat_with_the_real_model_streams_and_keeps_history(
    start_analyzer: StartAnalyzer, llm_engine: SharedEngine, video: pathlib.Path
) -> None:
    server = start_analyzer(engine=llm_engine, max_tokens=8, chat_max_tokens=10)
    with AnalyzerClient(f"127.0.0.1:{server.port}") as client:
        uploaded = client.upload_video(video, start_analysis=True)
        assert uploaded.job is not None
        events = list(client.events(uploaded.job.id))
        assert events[-1].kind == "complete"
        assert events[-1].result is not None
        assert events[-1].result.model == llm_engine.model
        assert events[-1].result.summary

        with client.chat(uploaded.job.id, "What happens?") as answer:
            chunks = list(answer)
        *pieces, final = chunks
        assert len(pieces) >= 2
        assert final.done
        assert final.text == "".join(c.delta for c in pieces)
        assert final.completion_tokens == 10  # <eos> is ignored by the test engine
        with client.chat(uploaded.job.id, "And then?", max_tokens=3) as answer:
            again = list(answer)
        assert again[-1].completion_tokens == 3
