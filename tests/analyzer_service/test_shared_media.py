"""Two analyzers on one PostgreSQL database, each with its own data directory and one media
storage they share (VIGIL_ANALYZER_STORAGE_URL=file:///...): a video uploaded through one is
analysed by the other, chat through the first reads the frames the second sampled, and a
replica starting again never removes the upload another is receiving."""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from analyzer_service.settings import AnalyzerSettings
from tests.analyzer_service.helpers import (
    CHUNK,
    FakeEngine,
    StartServer,
    connect,
    is_chat,
    upload,
    wait_for_event,
)
from tests.analyzer_service.test_replicas import SEED, named, owners
from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.analyzer.v1 import analyzer_service_pb2_grpc as pb_grpc


@pytest.fixture
def shared(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "shared media"


@pytest.fixture
def replica(
    settings: AnalyzerSettings, postgres_url: str, shared: pathlib.Path, tmp_path: pathlib.Path
) -> AnalyzerSettings:
    """Replica "a": its own data directory, the shared media storage; short leases."""
    return settings.model_copy(
        update={
            "data_dir": tmp_path / "a",
            "storage_url": shared.as_uri(),
            "database_url": SecretStr(postgres_url),
            "replica_id": "a",
            "lease_s": 2.0,
            "lease_renew_s": 0.25,
        }
    )


def files_under(path: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


async def test_a_video_uploaded_to_one_replica_is_analysed_by_another_and_chatted_on_anywhere(
    replica: AnalyzerSettings,
    start_server: StartServer,
    short_bytes: bytes,
    postgres_url: str,
    shared: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    engine_a, engine_b = FakeEngine(block=True), FakeEngine()
    a = await start_server(replica, engine=engine_a)
    async with connect(a) as channel_a:
        stub_a = pb_grpc.AnalyzerServiceStub(channel_a)
        busy = (await upload(stub_a, short_bytes, options=SEED)).job
        await wait_for_event(stub_a, busy.id, "thinking")
        # A's only slot is taken: the next job can only run on B, which never saw its upload.
        b = await start_server(named(replica, "b", data_dir=tmp_path / "b"), engine=engine_b)
        async with connect(b) as channel_b:
            stub_b = pb_grpc.AnalyzerServiceStub(channel_b)
            job = (await upload(stub_a, short_bytes, options=SEED)).job
            done = await wait_for_event(stub_b, job.id, "complete")
            assert owners(postgres_url)[job.id] == "b"
            assert done.complete.result.summary.strip() == "A person walks in at [00:02]."

            engine_a.release()
            question = pb.ChatRequest(job_id=job.id, question="Who came in?")
            answer = [r async for r in stub_a.Chat(question)]
    assert answer[-1].done
    (asked,) = [r for r in engine_a.requests if is_chat(r)]
    frames = shared / "jobs" / job.id / "frames"
    assert asked.images
    assert all(path.parent == frames for path in asked.images)
    assert len(list(frames.glob("*.jpg"))) == len(done.complete.result.frames)
    # Every medium is on the shared storage, none in a replica's own data directory.
    assert sorted(p.name for p in (shared / "videos").iterdir()) == sorted(
        [busy.video.id, job.video.id]
    )
    assert files_under(tmp_path / "a") + files_under(tmp_path / "b") == []


async def test_a_replica_starting_again_leaves_the_upload_another_is_receiving(
    replica: AnalyzerSettings,
    start_server: StartServer,
    short_bytes: bytes,
    shared: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    videos = shared / "videos"
    b_settings = named(replica, "b", data_dir=tmp_path / "b")
    a = await start_server(replica)
    half = len(short_bytes) // 2
    go_on = asyncio.Event()

    async def requests() -> AsyncIterator[pb.UploadVideoRequest]:
        header = pb.UploadHeader(name="lobby.mp4", size=len(short_bytes), start_analysis=False)
        yield pb.UploadVideoRequest(header=header)
        yield pb.UploadVideoRequest(chunk=short_bytes[:half])
        await go_on.wait()
        for offset in range(half, len(short_bytes), CHUNK):
            yield pb.UploadVideoRequest(chunk=short_bytes[offset : offset + CHUNK])

    async with connect(a) as channel_a:
        stub_a = pb_grpc.AnalyzerServiceStub(channel_a)
        call = asyncio.ensure_future(stub_a.UploadVideo(requests()))
        while not [p for p in videos.glob("*.a.part") if p.stat().st_size == half]:
            assert not call.done(), "the upload ended before its first half was written"
            await asyncio.sleep(0.02)
        # B's own upload cut off by its last crash is dead; A's, in progress, is not.
        dead = videos / f"{'0' * 32}.b.part"
        dead.write_bytes(b"cut off when b crashed")
        b = await start_server(b_settings)
        await b.stop(0)
        await start_server(b_settings)
        assert not dead.exists()
        assert len(list(videos.glob("*.a.part"))) == 1
        go_on.set()
        video = (await call).video
    assert (video.size, video.sha256) == (len(short_bytes), hashlib.sha256(short_bytes).hexdigest())
    assert [p.name for p in videos.iterdir()] == [video.id]
    assert (videos / video.id).read_bytes() == short_bytes
