"""The sampled frames of each job and their manifest, kept for chat.

The sampling stage leaves a job's frames (JPEGs), what chat needs of them before the job's result
exists (the frames with their detections and the timeline) and a manifest naming the files, in
the media storage (``media_storage``), where every replica finds them: chat on any replica reads
the frames of a job another replica sampled. The manifest is written last: its presence says the
frames are ready, so ``load`` answering is how chat knows it can ask the model about them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence

from google.protobuf.message import DecodeError

from analyzer_service.media_storage import MediaMissing, MediaStorage
from vigil.analyzer.v1 import analyzer_service_pb2 as pb

SAMPLED_FILE = "sampled.pb"
MANIFEST_FILE = "frames.json"


@dataclasses.dataclass(frozen=True)
class StoredFrames:
    """A job's sampled frames (with their detections) and timeline, and the frames' files."""

    sampled: pb.AnalysisResult
    files: list[pathlib.Path]


class FramesStore:
    """A job's frames in the media storage; its calls block (quick file operations here)."""

    def __init__(self, storage: MediaStorage) -> None:
        self.storage = storage

    def directory(self, job_id: str) -> pathlib.Path:
        """Where the job's frames are decoded to."""
        return self.storage.frames_workdir(job_id)

    def clear(self, job_id: str) -> None:
        """Forget the job's frames: a run starting again starts from a clean slate."""
        self.storage.delete_frames(job_id)

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
        for path in files:
            self.storage.keep_frame_file(job_id, path)
        self.storage.put_frame(job_id, SAMPLED_FILE, sampled.SerializeToString())
        # Written last: its presence says the frames are ready.
        self.storage.put_frame(job_id, MANIFEST_FILE, json.dumps(manifest).encode())

    def load(self, job_id: str) -> StoredFrames | None:
        """The job's frames, or None while they are not all sampled (or no longer stored)."""
        try:
            manifest = json.loads(self.storage.get_frame(job_id, MANIFEST_FILE))
            sampled = pb.AnalysisResult.FromString(self.storage.get_frame(job_id, SAMPLED_FILE))
            files = [self.storage.frame_file(job_id, entry["file"]) for entry in manifest]
        except (MediaMissing, OSError, ValueError, KeyError, TypeError, DecodeError):
            return None
        if len(files) != len(sampled.frames):
            return None
        return StoredFrames(sampled, files)
