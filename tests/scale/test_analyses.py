"""Analyses across replicas on the session's real vLLM server: started through one bridge and
followed on the other over Socket.IO, and a job whose analyzer is SIGKILLed while the model writes
its answer finished by the other analyzer with one gap-free, duplicate-free history and the
attempt counted."""

from __future__ import annotations

import asyncio
import io
import pathlib
import signal
import time

import pytest

from tests.llm import SERVED_NAME
from tests.scale.helpers import (
    Follower,
    assert_one_history,
    history,
    job_owner,
    replica_named,
    thinking,
    until,
    upload,
)
from vigil.devtools.cluster import Cluster
from vigil.loadgen.media import small_video
from vigil.sdk import AnalyzerClient


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return small_video(pathlib.Path(tmp_path_factory.mktemp("video")) / "clip.mp4")


def start(client: AnalyzerClient, video: bytes) -> str:
    uploaded = client.upload_video(io.BytesIO(video), name="clip.mp4", start_analysis=True)
    assert uploaded.job is not None
    return uploaded.job.id


async def test_an_analysis_started_on_one_bridge_is_followed_on_the_other(
    cluster: Cluster, video: bytes
) -> None:
    one, two = cluster.bridge_urls
    follower = Follower(two)
    try:
        await follower.join("scale-a")
        uploaded = await upload(one, video, analyze="true", session_id="scale-a")
        job_id = uploaded["job"]["id"]
        events = await follower.until_complete()
    finally:
        await follower.close()
    # Every event of the job, in order, none twice, none missing: the history the analyzers keep.
    assert {data["job_id"] for _, data in events} == {job_id}
    assert {data["session_id"] for _, data in events} == {"scale-a"}
    stored = history(cluster, job_id)
    assert_one_history(stored)
    assert [data["sequence"] for _, data in events] == [e.sequence for e in stored]
    # The real model wrote it (what it says is noise: its weights are random).
    assert events[-1][1]["result"]["model"] == SERVED_NAME
    assert events[-1][1]["result"]["summary"]


async def test_a_job_whose_analyzer_is_killed_is_finished_by_the_other(
    cluster: Cluster, video: bytes
) -> None:
    with AnalyzerClient(cluster.analyzer_target) as client:
        job_id = start(client, video)
    # Killed once the model is writing the answer, seconds before it can be done.
    await asyncio.to_thread(thinking, cluster, job_id)
    owner = replica_named(cluster.analyzers, job_owner(cluster, job_id))
    other = next(r for r in cluster.analyzers if r is not owner)
    killed_at = time.monotonic()
    owner.kill(signal.SIGKILL)
    # The survivor takes the job once the dead replica's lease has expired, and runs it to the end.
    took = await until(lambda: job_owner(cluster, job_id) == other.name, "the job taken over")
    with AnalyzerClient(other.address) as client:
        followed = list(client.events(job_id))
        job = client.get_job(job_id)
    done = time.monotonic() - killed_at
    print(f"\nanalysis takeover: {took:.1f} s after SIGKILL, finished after {done:.1f} s")
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert_one_history(followed)
    assert followed == history(cluster, job_id, other)
    retried = [e for e in followed if "attempt 2 of" in e.message]
    assert len(retried) == 1
    # The killed attempt had reached the model; the second one ran from the start again.
    before = followed[: followed.index(retried[0])]
    assert [e.kind for e in before][-1] == "thinking"
    assert followed[-1].result is not None
    assert followed[-1].result.model == SERVED_NAME
    assert followed[-1].result.summary
    # Brought back for the tests after this one (the fixture would too): two analyzers again.
    owner.start()
    cluster.wait_ready(120, [owner])
