"""PostgreSQL and Redis restarted under a working cluster (a job caught while the real model
writes its answer, the others running or queued, a session followed on the other bridge, a
viewer watching): every job completes once with one history, the follower gets every event in
order, the viewer gets frames again, and the bridges share sessions through Redis again
afterwards."""

from __future__ import annotations

import io
import pathlib
import time

import pytest
from websockets.asyncio.client import connect

from tests.scale.conftest import SOURCES
from tests.scale.helpers import (
    Follower,
    assert_one_history,
    frames,
    history,
    inferring,
    until,
    upload,
)
from vigil.devtools.cluster import Cluster
from vigil.devtools.postgres import PostgresServer
from vigil.devtools.redis_server import RedisServer
from vigil.loadgen.media import small_video
from vigil.sdk import AnalyzerClient

# One runs on each analyzer (one job at a time each); the rest wait in the shared queue.
JOBS = 3


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return small_video(pathlib.Path(tmp_path_factory.mktemp("video")) / "clip.mp4")


def finished(cluster: Cluster, job_id: str, within: float = 180.0) -> str:
    """The job's state once it has ended (followed through its events)."""
    deadline = time.monotonic() + within
    with AnalyzerClient(cluster.analyzer_target) as client:
        while (state := client.get_job(job_id, timeout_s=10).state) in ("queued", "running"):
            assert time.monotonic() < deadline, f"{job_id} still {state}"
            time.sleep(0.2)
    return state


async def test_redis_and_postgresql_restarts_lose_no_job_and_no_viewer(
    cluster: Cluster,
    video: bytes,
    redis_server: RedisServer,
    postgres: PostgresServer,
) -> None:
    one, two = cluster.bridge_urls
    follower = Follower(two)
    ws_url = two.replace("http://", "ws://")
    try:
        await follower.join("scale-d")
        async with connect(f"{ws_url}/ws/video-stream/{SOURCES[1]}") as viewer:
            await frames(viewer, 3)
            followed_job = (await upload(one, video, analyze="true", session_id="scale-d"))["job"]
            with AnalyzerClient(cluster.analyzer_target) as client:
                others = [
                    client.upload_video(io.BytesIO(video), name="clip.mp4", start_analysis=True).job
                    for _ in range(JOBS - 1)
                ]
            job_ids = [followed_job["id"], *(job.id for job in others if job is not None)]
            assert len(job_ids) == JOBS
            # Restarted once a job has reached the model (another runs on the other analyzer or
            # is about to, the third waits in the queue): its answer takes seconds more, so
            # PostgreSQL goes away under it.
            caught: list[str] = []

            def at_the_model() -> bool:
                caught[:] = inferring(cluster, job_ids)
                return bool(caught)

            await until(at_the_model, "a job at the model")
            outage_began = time.time()
            postgres.restart()
            redis_server.restart()
            restarted_at = time.time()
            events = await follower.until_complete(240)
            resumed = await frames(viewer, 3)
            while resumed[0] < restarted_at:
                resumed = [*resumed[1:], *(await frames(viewer, 1))]
    finally:
        await follower.close()
    print(f"\nafter the restarts: followed job done, viewer frames again at "
          f"{time.time() - restarted_at:.1f} s")  # fmt: skip
    for job_id in job_ids:
        assert finished(cluster, job_id) == "succeeded", job_id
        assert_one_history(history(cluster, job_id))
    # The caught jobs were still running when PostgreSQL went away (else this tested nothing).
    for job_id in caught:
        ended = history(cluster, job_id)[-1].time
        assert ended is not None
        assert ended > outage_began, job_id
    # Every event of the followed job reached the other bridge's client once, in order.
    stored = history(cluster, job_ids[0])
    assert [data["sequence"] for _, data in events] == [e.sequence for e in stored]
    assert {data["job_id"] for _, data in events} == {job_ids[0]}

    # The bridges work together through the restarted Redis: a new session, named on one and
    # followed on the other, as before.
    cluster.wait_ready(120)
    after = Follower(two)
    try:
        await after.join("scale-d-after")
        job_id = (await upload(one, video, analyze="true", session_id="scale-d-after"))["job"]["id"]
        events = await after.until_complete()
    finally:
        await after.close()
    stored = history(cluster, job_id)
    assert [data["sequence"] for _, data in events] == [e.sequence for e in stored]
