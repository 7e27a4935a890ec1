"""``vigil bench scale``: what a second replica of each service adds, and how fast the survivors
take over from a replica that dies (issue 15).

The bench starts a real PostgreSQL and Redis (``vigil.devtools``), then the services as processes
on them (``vigil.devtools.cluster``): first ONE replica of each service, then TWO, each run on a
fresh database. Everything is on 127.0.0.1, so the replicas share this machine's cores: the ratio
says what a second replica adds here, not what a second machine would.

Per run:
- analyses per second: ``--analyses`` (default 40) analyses of one short video (engine none,
  the detection pass on the detectors), started at once through the SDK on the analyzer target
  (round robin over the replicas); from just before the first start to the last job's last
  change (its ``updated_at``); and how many each replica ran (the jobs' owners in the database);
- viewer frames per second: ``--viewers`` (default 100) WebSocket viewers spread over the
  bridges, watching ``--sources`` (default 2) test-pattern sources at ``--fps`` (default 15),
  frames counted over ``--duration`` seconds (default 6) after a warm-up. The bridges carry all
  they are offered (``viewer_fps_offered``: viewers x fps) until they saturate: a ratio near 1
  with everything delivered says the load was below one bridge's capacity, not that a second
  adds nothing; raise ``--viewers`` / ``--fps`` to find the ceiling.

With two replicas, then: the takeover times (``vigil.bench.scale_takeover``): SIGKILL the analyzer
running a job, and the detector running sources (goal: streaming again within 10 s).

The headline ``ratio`` is two replicas' analyses per second over one's, from the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import pathlib
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from vigil.analyzer.v1 import analyzer_service_pb2 as apb
from vigil.bench import scale_takeover

if TYPE_CHECKING:
    from vigil.devtools.cluster import Cluster

ANALYSES = 40
VIEWERS = 100
SOURCES = 2
FPS = 15.0
SECONDS = 6.0
WARMUP_S = 2.0
DETECTOR_GOAL_S = 10.0
READY_S = 180.0


def _env(options: dict[str, Any], analyses: int, viewers: int) -> dict[str, str]:
    env = {
        "VIGIL_ANALYZER_ENGINE": "none",
        "VIGIL_ANALYZER_MAX_QUEUED_JOBS": str(max(64, 2 * analyses)),
        "VIGIL_DETECTOR_BACKEND": "none",
        # Every viewer comes from 127.0.0.1: the per-address cap must not refuse them.
        "VIGIL_BRIDGE_MAX_CONNECTIONS_PER_CLIENT": str(max(32, viewers + 16)),
    }
    # Leases: the services' defaults unless asked (the test shortens them).
    for service in ("analyzer", "detector"):
        if f"{service}_lease_s" in options:
            lease_s = float(options[f"{service}_lease_s"])
            env[f"VIGIL_{service.upper()}_LEASE_S"] = str(lease_s)
            env[f"VIGIL_{service.upper()}_LEASE_RENEW_S"] = str(lease_s / 4)
    return env


@contextlib.contextmanager
def _cluster(
    database: str, redis: str, data_dir: pathlib.Path, replicas: int, env: dict[str, str]
) -> Iterator[Cluster]:
    from vigil.devtools.cluster import ClusterSpec, running_cluster

    spec = ClusterSpec(
        database_url=database,
        redis_url=redis,
        data_dir=data_dir,
        detectors=replicas,
        analyzers=replicas,
        bridges=replicas,
        sources=(),
        env=env,
    )
    with running_cluster(spec, ready_timeout_s=READY_S) as cluster:
        yield cluster


def _owners(database: str, job_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT owner, count(*) FROM analyzer_jobs WHERE id = ANY(%s) GROUP BY owner"
            " ORDER BY owner",
            (job_ids,),
        ).fetchall()
    return {str(owner): int(count) for owner, count in rows}


def _unfinished(database: str, job_ids: list[str]) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM analyzer_jobs WHERE id = ANY(%s) AND state <= %s",
            (job_ids, apb.JOB_STATE_RUNNING),
        ).fetchone()
    return int(row[0]) if row else len(job_ids)


async def _analyses(cluster: Cluster, database: str, video_id: str, count: int) -> dict[str, Any]:
    from vigil.sdk import AnalysisOptions, AsyncAnalyzerClient

    async with AsyncAnalyzerClient(cluster.analyzer_target) as client:
        started = time.time()
        jobs = await asyncio.gather(
            *(client.start_analysis(video_id, AnalysisOptions()) for _ in range(count))
        )
        # Waited for in the database: one cheap query, where asking every job of the services
        # would load the replicas being measured.
        while True:
            if not _unfinished(database, [job.id for job in jobs]):
                break
            await asyncio.sleep(0.1)
        done = await asyncio.gather(*(client.get_job(job.id) for job in jobs))
    last = max(job.updated_at or started for job in done)
    succeeded = sum(job.state == "succeeded" for job in done)
    return {
        "per_s": round(count / (last - started), 2),
        "seconds": round(last - started, 2),
        "succeeded": succeeded,
        "per_replica": _owners(database, [job.id for job in jobs]),
    }


async def _add_sources(cluster: Cluster, database: str, count: int, fps: float) -> list[str]:
    """Add the sources, then wait until the detectors have shared them out (a replica adopts
    what it is asked to add, then hands its surplus over at a later tick: a viewer that came
    before would see its stream cut) and each delivers frames."""
    from vigil.sdk import AsyncDetectorClient, Frame

    ids = [f"scale-{n}" for n in range(count)]
    async with AsyncDetectorClient(cluster.detector_target) as client:
        for source_id in ids:
            await client.add_source(source_id, "test_pattern", max_fps=fps, timeout_s=30)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            # Every source counts (the detectors' configured default one too), as they count.
            owners = [owner for owner, _ in scale_takeover.source_leases(database).values()]
            share = math.ceil(len(owners) / len(cluster.detectors))
            if None not in owners and max(Counter(owners).values()) <= share:
                break
            await asyncio.sleep(0.2)
        for source_id in ids:
            async for item in client.subscribe(source_id, omit_jpeg=True):
                if isinstance(item, Frame):
                    break
    return ids


async def _viewers(
    cluster: Cluster, sources: list[str], count: int, warmup_s: float, seconds: float
) -> dict[str, Any]:
    from vigil.loadgen import clients
    from vigil.loadgen.stats import ClientStats

    bridges = [url.replace("http://", "ws://") for url in cluster.bridge_urls]
    stats = [ClientStats() for _ in range(count)]
    urls = [
        f"{bridges[n % len(bridges)]}/ws/video-stream/{sources[n % len(sources)]}"
        "?format=binary&extras=sequence"
        for n in range(count)
    ]
    tasks = [
        asyncio.create_task(clients.viewer(url, s, binary=True))
        for url, s in zip(urls, stats, strict=True)
    ]
    try:
        await asyncio.sleep(warmup_s)
        before = [s.frames for s in stats]
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        frames = [s.frames - b for s, b in zip(stats, before, strict=True)]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    per_bridge = {
        url: round(sum(frames[n :: len(bridges)]) / elapsed, 1)
        for n, url in enumerate(cluster.bridge_urls)
    }
    return {
        "fps": round(sum(frames) / elapsed, 1),
        "per_bridge": per_bridge,
        "errors": dict(sum((s.errors for s in stats), Counter[str]())),
    }


async def _measure(
    cluster: Cluster, database: str, videos: dict[str, pathlib.Path], options: dict[str, Any]
) -> dict[str, Any]:
    from vigil.sdk import AnalysisOptions, AsyncAnalyzerClient

    async with AsyncAnalyzerClient(cluster.analyzer_target) as client:
        ids = {name: (await client.upload_video(path)).video.id for name, path in videos.items()}
    # Warm-up, not counted: a few analyses per replica (each replica's first job starts its
    # media workers and connections).
    await _analyses(cluster, database, ids["short"], 2 * len(cluster.analyzers))
    figures: dict[str, Any] = {
        "analyses": await _analyses(
            cluster, database, ids["short"], int(options.get("analyses", ANALYSES))
        )
    }
    sources = await _add_sources(
        cluster, database, int(options.get("sources", SOURCES)), float(options.get("fps", FPS))
    )
    figures["viewers"] = await _viewers(
        cluster,
        sources,
        int(options.get("viewers", VIEWERS)),
        float(options.get("warmup_s", WARMUP_S)),
        float(options.get("duration", SECONDS)),
    )
    if len(cluster.analyzers) > 1:
        # A longer job than the short ones, so that the kill lands while it runs.
        longer = AnalysisOptions(sampling_policy="uniform", max_frames=64)
        figures["analyzer_takeover"] = await scale_takeover.analyzer_takeover(
            cluster, database, ids["long"], longer
        )
        figures["detector_takeover"] = await scale_takeover.detector_takeover(
            cluster, database, DETECTOR_GOAL_S
        )
    return figures


def _row(one: float, two: float) -> dict[str, float | None]:
    return {"one": one, "two": two, "two_over_one": round(two / one, 2) if one else None}


def run(options: dict[str, Any]) -> dict[str, Any]:
    from vigil.devtools.postgres import running_postgres
    from vigil.devtools.redis_server import running_redis
    from vigil.loadgen import media

    analyses = int(options.get("analyses", ANALYSES))
    viewers = int(options.get("viewers", VIEWERS))
    env = _env(options, analyses, viewers)
    runs: dict[int, dict[str, Any]] = {}
    with (
        running_postgres() as postgres,
        running_redis() as redis,
        tempfile.TemporaryDirectory(prefix="vigil-bench-scale-") as tmp,
    ):
        videos = {"short": pathlib.Path(tmp) / "short.mp4", "long": pathlib.Path(tmp) / "long.mp4"}
        media.small_video(videos["short"], seconds=2.0)
        media.small_video(videos["long"], seconds=120.0)
        for replicas in (1, 2):
            database = postgres.create_database()
            redis.flush()
            data_dir = pathlib.Path(tmp) / f"replicas-{replicas}"
            with _cluster(database, redis.url, data_dir, replicas, env) as cluster:
                runs[replicas] = asyncio.run(_measure(cluster, database, videos, options))
    one, two = runs[1], runs[2]
    analyses_row = _row(one["analyses"]["per_s"], two["analyses"]["per_s"])
    return {
        "name": "scale",
        "machine": "every replica, PostgreSQL, Redis and the clients on this one machine",
        "analyses": analyses,
        "viewers": viewers,
        "sources": int(options.get("sources", SOURCES)),
        "columns": "one replica of each service | two | two/one",
        "analyses_per_s": analyses_row,
        "analyses_per_replica": {
            "one": one["analyses"]["per_replica"],
            "two": two["analyses"]["per_replica"],
        },
        "analyses_succeeded": {
            "one": one["analyses"]["succeeded"],
            "two": two["analyses"]["succeeded"],
        },
        "viewer_fps_offered": round(viewers * float(options.get("fps", FPS)), 1),
        "viewer_fps": _row(one["viewers"]["fps"], two["viewers"]["fps"]),
        "viewer_fps_per_bridge": {
            "one": one["viewers"]["per_bridge"],
            "two": two["viewers"]["per_bridge"],
        },
        "viewer_errors": {"one": one["viewers"]["errors"], "two": two["viewers"]["errors"]},
        "analyzer_takeover": two["analyzer_takeover"],
        "detector_takeover": two["detector_takeover"],
        "baseline": "one replica of each service, same run",
        "ratio": analyses_row["two_over_one"],
    }
