"""Media in a directory: the data directory by default, or a volume every replica mounts.

Layout (the one the analyzer has always used in its data directory): ``videos/<id>`` for a
stored video, ``videos/<id>.<replica>.part`` while it is being written, ``jobs/<job>/frames/``
for a job's frames. A write becomes visible by a rename, atomic on a local file system and on
NFS alike, so no replica ever reads half a video or half a manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import re
import shutil
import time
import uuid

from analyzer_service.media_storage import MediaMissing

PART = ".part"
TMP = ".tmp"


def _component(name: str) -> str:
    """``name`` as one path component, refused if it could point anywhere else."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ValueError(f"not a media name: {name!r}")
    return name


def replica_tag(replica: str) -> str:
    """The replica's name as it may appear in a file name. A name changed by the cleaning gets a
    hash of the original, so that two replicas never share a tag (and so never remove each
    other's uploads in progress)."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", replica)[:48]
    if clean != replica or not clean:
        clean += "-" + hashlib.sha256(replica.encode()).hexdigest()[:8]
    return clean


class _DirectoryWrite:
    """One video being written to its replica-named part file, renamed into place on commit."""

    def __init__(self, videos: pathlib.Path, tag: str) -> None:
        self.video_id = uuid.uuid4().hex
        self.final = videos / self.video_id
        self.part = videos / f"{self.video_id}.{tag}{PART}"
        self._file: io.BufferedWriter | None = open(self.part, "xb")  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise ValueError("this video is no longer being written")
        self._file.write(chunk)

    def staged_source(self) -> str:
        self._close()
        return str(self.part)

    def commit(self) -> None:
        self._close()
        os.replace(self.part, self.final)

    def abort(self) -> None:
        self._close()
        self.part.unlink(missing_ok=True)
        self.final.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SharedDirectory:
    """``MediaStorage`` in the directory ``root``, shared by the replicas that mount it."""

    def __init__(self, root: pathlib.Path, *, replica: str) -> None:
        self.root = root
        self.location = str(root)
        self.videos = root / "videos"
        self.jobs = root / "jobs"
        self.tag = replica_tag(replica)
        self.videos.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        self.videos.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.videos).free

    def begin_video(self) -> _DirectoryWrite:
        self.videos.mkdir(parents=True, exist_ok=True)
        return _DirectoryWrite(self.videos, self.tag)

    def video_source(self, video_id: str) -> str:
        path = self.videos / _component(video_id)
        if not path.is_file():
            raise MediaMissing(f"video {video_id} is not stored in {self.location}")
        return str(path)

    def list_videos(self) -> list[str]:
        return sorted(
            p.name for p in self.videos.iterdir() if not p.name.endswith(PART) and p.is_file()
        )

    def delete_video(self, video_id: str) -> None:
        (self.videos / _component(video_id)).unlink(missing_ok=True)

    def remove_abandoned_uploads(self, idle_s: float | None) -> int:
        # A part file is removed only when no upload can still be writing it: this replica's
        # own (it has just started, so its uploads died with its last run; replica ids are
        # unique), or another's idle past ``idle_s``. An upload in progress writes at least once
        # per upload idle timeout (or ends), so a replica starting never removes the upload
        # another replica is receiving on the same volume.
        idle_since = None if idle_s is None else time.time() - idle_s
        own = f".{self.tag}{PART}"
        removed = 0
        for part in self.videos.glob(f"*{PART}"):
            with contextlib.suppress(FileNotFoundError):
                if (
                    part.name.endswith(own)
                    or idle_since is None
                    or part.stat().st_mtime < idle_since
                ):
                    part.unlink()
                    removed += 1
        return removed

    def frames_workdir(self, job_id: str) -> pathlib.Path:
        # Decoded straight into their shared place: keeping them copies nothing.
        return self.jobs / _component(job_id) / "frames"

    def keep_frame_file(self, job_id: str, path: pathlib.Path) -> None:
        directory = self.frames_workdir(job_id)
        if path.parent == directory:
            if not path.is_file():
                raise MediaMissing(f"frame file {path} is not there to keep")
            return
        self.put_frame(job_id, path.name, path.read_bytes())

    def put_frame(self, job_id: str, name: str, data: bytes) -> None:
        directory = self.frames_workdir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        # Named by a fresh id, so that two writers of one name never share a temporary file.
        tmp = directory / f".{_component(name)}.{uuid.uuid4().hex}{TMP}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, directory / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get_frame(self, job_id: str, name: str) -> bytes:
        try:
            return self.frame_file(job_id, name).read_bytes()
        except FileNotFoundError:
            raise MediaMissing(self._missing(job_id, name)) from None

    def frame_file(self, job_id: str, name: str) -> pathlib.Path:
        path = self.frames_workdir(job_id) / _component(name)
        if not path.is_file():
            raise MediaMissing(self._missing(job_id, name))
        return path

    def list_frames(self, job_id: str) -> list[str]:
        try:
            names = os.listdir(self.frames_workdir(job_id))
        except FileNotFoundError:
            return []
        return sorted(name for name in names if not name.startswith("."))

    def delete_frames(self, job_id: str) -> None:
        shutil.rmtree(self.frames_workdir(job_id), ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty (or gone): left as it is
            (self.jobs / job_id).rmdir()

    def _missing(self, job_id: str, name: str) -> str:
        return f"frame {name} of job {job_id} is not stored in {self.location}"
