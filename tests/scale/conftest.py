"""One cluster for the whole multi-replica suite (``vigil.devtools.cluster``): two detectors, two
analyzers and two bridges as real processes on the session's PostgreSQL and Redis, the analyzers
sharing the session's vLLM server (``vllm_server``: the tiny Gemma 3, loaded once for every suite
that needs it). Starting the cluster costs seconds; every test gets it with every
replica running again (a test that killed one need not restore it). Package-scoped: it stops
after the suite's last test, so the suites after it do not share the machine with it."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.llm import API_KEY, MAX_IMAGES, MAX_MODEL_LEN, SERVED_NAME
from vigil.devtools.cluster import Cluster, ClusterSpec, running_cluster
from vigil.devtools.postgres import PostgresServer
from vigil.devtools.redis_server import RedisServer
from vigil.sdk import SourceSpec

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("cam1", "cam2")
# Leases of several renewals (a busy 2-core box must not hand a healthy replica's work away),
# short enough that takeovers take seconds; the bridges retry a lost backend quickly.
ENV = {
    "VIGIL_ANALYZER_LEASE_S": "4",
    "VIGIL_ANALYZER_LEASE_RENEW_S": "0.5",
    "VIGIL_DETECTOR_LEASE_S": "4",
    "VIGIL_DETECTOR_LEASE_RENEW_S": "0.5",
    "VIGIL_DETECTOR_LINGER_S": "0.5",
    "VIGIL_BRIDGE_RETRY_INITIAL_S": "0.1",
    "VIGIL_BRIDGE_RETRY_MAX_S": "1",
    # The session's vLLM server and what it was started with (4 images of 16 tokens a prompt,
    # 2048 tokens in all).
    "VIGIL_ANALYZER_MODEL": SERVED_NAME,
    "VIGIL_ANALYZER_VLLM_API_KEY": API_KEY,
    "VIGIL_ANALYZER_MAX_IMAGES": str(MAX_IMAGES),
    "VIGIL_ANALYZER_MAX_MODEL_LEN": str(MAX_MODEL_LEN),
    "VIGIL_ANALYZER_TOKENS_PER_IMAGE": "24",
    # Long greedy answers (the same every time): the model writes for seconds after a job's
    # ``thinking`` event, so the tests that kill or restart things under a job catch it there.
    "VIGIL_ANALYZER_MAX_TOKENS": "1200",
    "VIGIL_ANALYZER_TEMPERATURE": "0",
    # The vLLM server shares two cores with every replica, PostgreSQL and Redis: while it writes
    # two answers it may take seconds to answer /health, and a check timed out would fail a
    # healthy generation (seen once with the 3 s default during the restart test).
    "VIGIL_ANALYZER_ENGINE_HEALTH_TIMEOUT_S": "30",
}


@pytest.fixture(scope="package")
def scale_database(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="package")
def running(
    scale_database: str,
    redis_server: RedisServer,
    vllm_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if redis_server.process is None:
        redis_server.start()
    spec = ClusterSpec(
        database_url=scale_database,
        redis_url=redis_server.url,
        data_dir=tmp_path_factory.mktemp("cluster"),
        vllm_urls=(vllm_server,),
        sources=tuple(
            SourceSpec(s, "test_pattern", mode="always", max_fps=5, width=320, height=240)
            for s in SOURCES
        ),
        # The services are this checkout's, whatever the installed package points at.
        env={**ENV, "PYTHONPATH": f"{ROOT}:{ROOT / 'clients'}"},
    )
    with running_cluster(spec) as cluster:
        yield cluster


@pytest.fixture
def cluster(running: Cluster) -> Cluster:
    """The package's cluster with every replica up."""
    for replica in running.replicas:
        if not replica.running():
            replica.start()
    running.wait_ready(120)
    return running
