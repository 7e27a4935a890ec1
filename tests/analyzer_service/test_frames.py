"""The frames store: a job's frames are there for chat once all are saved, and not before."""

from __future__ import annotations

import pathlib

from analyzer_service.frames import MANIFEST_FILE, FramesStore
from analyzer_service.shared_directory import SharedDirectory
from vigil.analyzer.v1 import analyzer_service_pb2 as pb


def sampled_frames(store: FramesStore, job_id: str) -> tuple[pb.AnalysisResult, list[pathlib.Path]]:
    directory = store.directory(job_id)
    directory.mkdir(parents=True)
    files = [directory / f"frame-{n}.jpg" for n in range(3)]
    for path in files:
        path.write_bytes(b"jpeg")
    sampled = pb.AnalysisResult(
        frames=[pb.SampledFrame(time_s=n, index=10 * n, reason="uniform") for n in range(3)],
        timeline=[pb.TimelineEvent(start_s=1.0, end_s=1.0, description="a scene change")],
    )
    return sampled, files


def test_saved_frames_load_with_their_files_and_timeline(tmp_path: pathlib.Path) -> None:
    store = FramesStore(SharedDirectory(tmp_path, replica="a"))
    assert store.load("j1") is None
    sampled, files = sampled_frames(store, "j1")
    # Decoded but not saved: not ready yet.
    assert store.load("j1") is None
    store.save("j1", sampled, files)
    stored = store.load("j1")
    assert stored is not None
    assert stored.files == files
    assert stored.sampled == sampled
    assert store.load("j2") is None


def test_frames_missing_or_cleared_are_not_ready(tmp_path: pathlib.Path) -> None:
    store = FramesStore(SharedDirectory(tmp_path, replica="a"))
    sampled, files = sampled_frames(store, "j1")
    store.save("j1", sampled, files)
    files[1].unlink()
    assert store.load("j1") is None
    files[1].write_bytes(b"jpeg")
    (store.directory("j1") / MANIFEST_FILE).write_text("not json")
    assert store.load("j1") is None
    store.save("j1", sampled, files)
    assert store.load("j1") is not None
    store.clear("j1")
    assert not store.directory("j1").exists()
    assert store.load("j1") is None
