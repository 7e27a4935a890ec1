"""The media storage contract (analyzer_service.media_storage), one suite for every backend: a
backend joins by adding its name to BACKENDS and a branch to ``open_storage``.

``open_storage(replica)`` opens the same storage as that replica would, so that what one
replica writes, another sees. And the registry: the setting's schemes, and the refusal of those
not built.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from analyzer_service.media_storage import MediaMissing, MediaStorage, StorageUnavailable
from analyzer_service.media_storages import open_media_storage
from analyzer_service.server import serve
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.shared_directory import SharedDirectory, replica_tag

OpenStorage = Callable[[str], MediaStorage]
BACKENDS = ["directory"]


@pytest.fixture(params=BACKENDS)
def open_storage(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> OpenStorage:
    def opened(replica: str) -> MediaStorage:
        if request.param == "directory":
            return SharedDirectory(tmp_path / "shared", replica=replica)
        raise AssertionError(f"no such backend {request.param}")

    return opened


def read_source(source: str) -> bytes:
    """The bytes ffmpeg would read from a ``video_source`` (a local path for a directory)."""
    return pathlib.Path(source).read_bytes()


def written(storage: MediaStorage, *chunks: bytes) -> str:
    write = storage.begin_video()
    for chunk in chunks:
        write.write(chunk)
    write.commit()
    return write.video_id


def test_a_video_is_seen_only_once_committed_and_then_whole(open_storage: OpenStorage) -> None:
    storage, other = open_storage("a"), open_storage("b")
    write = storage.begin_video()
    write.write(b"first half ")
    write.write(b"second half")
    for reader in (storage, other):
        assert reader.list_videos() == []
        with pytest.raises(MediaMissing, match=write.video_id):
            reader.video_source(write.video_id)
    # The probe reads what was written before the commit.
    assert read_source(write.staged_source()) == b"first half second half"
    write.commit()
    for reader in (storage, other):
        assert reader.list_videos() == [write.video_id]
        assert read_source(reader.video_source(write.video_id)) == b"first half second half"
    assert storage.remove_abandoned_uploads(None) == 0


def test_an_aborted_write_leaves_nothing_before_or_after_its_commit(
    open_storage: OpenStorage,
) -> None:
    storage = open_storage("a")
    write = storage.begin_video()
    write.write(b"half an upload")
    write.abort()
    write.abort()
    assert storage.list_videos() == []
    # Nothing partial left for a later start to clean either.
    assert storage.remove_abandoned_uploads(None) == 0
    committed = storage.begin_video()
    committed.write(b"a whole upload")
    committed.commit()
    committed.abort()  # the cancel came just after the commit
    assert storage.list_videos() == []
    with pytest.raises(MediaMissing):
        storage.video_source(committed.video_id)


def test_concurrent_writers_of_different_videos_each_keep_their_own(
    open_storage: OpenStorage,
) -> None:
    storages = [open_storage("a"), open_storage("b")]
    writers = 8
    barrier = threading.Barrier(writers)
    ids: dict[int, str] = {}

    def upload(n: int) -> None:
        write = storages[n % 2].begin_video()
        barrier.wait()  # all begun before any writes: their chunks interleave
        for piece in range(50):
            write.write(f"{n}:{piece};".encode())
        write.commit()
        ids[n] = write.video_id

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids.values())) == writers
    assert storages[0].list_videos() == sorted(ids.values())
    for n, video_id in ids.items():
        expected = "".join(f"{n}:{piece};" for piece in range(50)).encode()
        assert read_source(storages[1 - n % 2].video_source(video_id)) == expected


def test_a_deleted_video_is_gone_for_every_replica(open_storage: OpenStorage) -> None:
    storage, other = open_storage("a"), open_storage("b")
    kept, deleted = written(storage, b"kept"), written(storage, b"deleted")
    other.delete_video(deleted)
    other.delete_video(deleted)  # twice: no error
    assert storage.list_videos() == [kept]
    with pytest.raises(MediaMissing, match=f"video {deleted} is not stored"):
        storage.video_source(deleted)


def test_frames_round_trip_between_replicas(
    open_storage: OpenStorage, tmp_path: pathlib.Path
) -> None:
    storage, other = open_storage("a"), open_storage("b")
    assert storage.list_frames("j1") == []
    # Decoded into the work directory, then kept; or from anywhere else.
    workdir = storage.frames_workdir("j1")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "f-0.jpg").write_bytes(b"jpeg 0")
    storage.keep_frame_file("j1", workdir / "f-0.jpg")
    elsewhere = tmp_path / "f-1.jpg"
    elsewhere.write_bytes(b"jpeg 1")
    storage.keep_frame_file("j1", elsewhere)
    storage.put_frame("j1", "frames.json", b"[1]")
    storage.put_frame("j1", "frames.json", b"[1, 2]")  # replaced whole
    storage.put_frame("j2", "frames.json", b"[]")
    assert other.list_frames("j1") == ["f-0.jpg", "f-1.jpg", "frames.json"]
    assert other.get_frame("j1", "frames.json") == b"[1, 2]"
    assert other.frame_file("j1", "f-1.jpg").read_bytes() == b"jpeg 1"
    assert other.get_frame("j1", "f-0.jpg") == b"jpeg 0"

    other.delete_frames("j1")
    other.delete_frames("j1")  # twice: no error
    assert storage.list_frames("j1") == []
    assert storage.list_frames("j2") == ["frames.json"]
    with pytest.raises(MediaMissing, match=r"frame frames\.json of job j1 is not stored"):
        storage.get_frame("j1", "frames.json")
    with pytest.raises(MediaMissing, match=r"frame f-0\.jpg of job j1"):
        storage.frame_file("j1", "f-0.jpg")


@pytest.mark.parametrize("name", ["", "../videos", "a/b", ".hidden", "a\\b"])
def test_names_that_could_point_elsewhere_are_refused(open_storage: OpenStorage, name: str) -> None:
    storage = open_storage("a")
    with pytest.raises(ValueError, match="not a media name"):
        storage.video_source(name)
    with pytest.raises(ValueError, match="not a media name"):
        storage.put_frame("j1", name, b"x")
    with pytest.raises(ValueError, match="not a media name"):
        storage.get_frame(name, "frames.json")


def test_a_replica_starting_removes_its_own_dead_uploads_not_another_replicas_live_one(
    open_storage: OpenStorage,
) -> None:
    a, b = open_storage("a"), open_storage("b")
    live = a.begin_video()
    live.write(b"an upload in progress on a")
    dead = b.begin_video()
    dead.write(b"cut off when b crashed")
    # b starts again: its own unfinished write is dead, a's (recently written) is not.
    assert open_storage("b").remove_abandoned_uploads(60.0) == 1
    live.write(b", still going")
    live.commit()
    assert a.list_videos() == [live.video_id]
    # Alone on its storage (no replicas), an analyzer removes every unfinished write.
    forgotten = b.begin_video()
    forgotten.write(b"x")
    assert open_storage("a").remove_abandoned_uploads(None) == 1
    assert a.list_videos() == [live.video_id]
    assert a.free_bytes() > 0


def test_replica_tags_are_file_name_safe_and_distinct() -> None:
    assert replica_tag("analyzer-0") == "analyzer-0"
    assert replica_tag("a.b") != replica_tag("a_b")
    assert "/" not in replica_tag("../x")
    assert "." not in replica_tag("../x")
    assert replica_tag("")


def test_the_setting_names_the_directory(tmp_path: pathlib.Path) -> None:
    default = open_media_storage(AnalyzerSettings(data_dir=tmp_path / "data"))
    assert default.location == str(tmp_path / "data")
    shared = tmp_path / "shared volume"
    storage = open_media_storage(
        AnalyzerSettings(data_dir=tmp_path / "data", storage_url=shared.as_uri())
    )
    assert storage.location == str(shared)
    assert (shared / "videos").is_dir()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("s3://key:hunter2@bucket/vigil", "object storage is not built yet"),
        ("gs://bucket/vigil", "object storage is not built yet"),
        ("ftp://host/videos", "must be empty .the data directory. or file:///path"),
        ("file://nas/videos", "must be a local path"),
        ("file:videos", "needs an absolute path"),
    ],
)
async def test_storage_not_built_or_malformed_is_refused_at_the_start(
    tmp_path: pathlib.Path, url: str, refusal: str
) -> None:
    settings = AnalyzerSettings(port=0, data_dir=tmp_path / "data", storage_url=url)
    with pytest.raises(StorageUnavailable, match=refusal) as refused:
        await serve(settings)
    assert "hunter2" not in str(refused.value)
    assert not (tmp_path / "data" / "videos").exists()


def test_the_service_started_on_object_storage_says_why_it_cannot(tmp_path: pathlib.Path) -> None:
    env = {
        **os.environ,
        "VIGIL_ANALYZER_PORT": "0",
        "VIGIL_ANALYZER_DATA_DIR": str(tmp_path / "data"),
        "VIGIL_ANALYZER_STORAGE_URL": "s3://bucket/vigil",
    }
    done = subprocess.run(
        [sys.executable, "-m", "analyzer_service"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "analyzer service cannot start: object storage is not built yet" in done.stderr
    assert "Traceback" not in done.stderr
