"""The sampled frames of each job and their manifest, kept for chat.

The sampling stage leaves a job's frames (JPEGs), what chat needs of them before the job's result
exists (the frames with their detections and the timeline) and a manifest naming the files, in
the job's ``frames`` directory. The manifest is written last: its presence says the frames are
ready, so ``load`` answering is how chat knows it can ask the model about them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from vigil.analyzer.v1 import analyzer_service_pb2 as pb

SAMPLED_FILE = "sampled.pb"
MANIFEST_FILE = "frames.json"


@dataclasses.dataclass(frozen=True)
class StoredFrames:
    """A job's sampled frames (with their detections) and timeline, and the frames' files."""

    sampled: pb.AnalysisResult
    files: list[pathlib.Path]


class FramesStore:
    def __init__(self, jobs_dir: pathlib.Path) -> None:
        self.jobs_dir = jobs_dir

    def directory(self, job_id: str) -> pathlib.Path:
        """Where the job's frames are decoded to."""
        return self.jobs_dir / job_id / "frames"

    def clear(self, job_id: str) -> None:
        """Forget the job's frames: a run starting again starts from a clean slate."""
        shutil.rmtree(self.directory(job_id), ignore_errors=True)

    def save(self, job_id: str, sampled: pb.AnalysisResult, files: Sequence[pathlib.Path]) -> None:
        """Record the frames of ``sampled`` (one file each, decoded into ``directory``)."""
        manifest = [
            {
                "time_s": frame.time_s,
                "index": frame.index,
                "file": path.name,
                "reason": frame.reason,
                "scene_change": frame.scene_change,
            }
            for frame, path in zip(sampled.frames, files, strict=True)
        ]
        directory = self.directory(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{SAMPLED_FILE}.tmp"
        tmp.write_bytes(sampled.SerializeToString())
        os.replace(tmp, directory / SAMPLED_FILE)
        # Written last: its presence says the frames are ready.
        tmp = directory / f"{MANIFEST_FILE}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, directory / MANIFEST_FILE)

    def load(self, job_id: str) -> StoredFrames | None:
        """The job's frames, or None while they are not all sampled (or no longer stored)."""
        directory = self.directory(job_id)
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            sampled = pb.AnalysisResult.FromString((directory / SAMPLED_FILE).read_bytes())
            files = [directory / entry["file"] for entry in manifest]
        except (OSError, ValueError, KeyError, TypeError, DecodeError):
            return None
        if len(files) != len(sampled.frames) or not all(path.exists() for path in files):
            return None
        return StoredFrames(sampled, files)
