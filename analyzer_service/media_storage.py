"""Where the analyzer keeps its media: the videos uploaded (or fetched from the detector's
recordings) and each job's sampled frames.

Replicas on one job queue run each other's jobs: any replica may run a job whose video another
received, and answer chat about frames another sampled, so the media live on storage that every
replica sees. ``MediaStorage`` is all the analyzer asks of that storage, and no other module
touches media files by their paths. ``media_storages.open_media_storage`` picks the
implementation from ``VIGIL_ANALYZER_STORAGE_URL`` by its scheme. One is built: a directory
(``shared_directory``), by default the data directory, else any volume mounted on every replica
(NFS, a Kubernetes ReadWriteMany volume). An object store is one class more behind this protocol:
its uploads staged in a local file and put whole on commit, its videos read by ffmpeg from a
signed URL (``video_source`` is "what ffmpeg can open", not necessarily a path), its frames
copied to a local cache for the model (``frame_file``).

Every method blocks (file or network I/O): the service calls them in a thread.
"""

from __future__ import annotations

import pathlib
from typing import Protocol

from analyzer_service.store import StoreUnavailable


class MediaMissing(Exception):
    """A video or frame that is not (or no longer) stored; the message says which."""


class StorageUnavailable(StoreUnavailable):
    """The configured media storage cannot be used (a scheme not built, a directory that cannot
    be written). A StoreUnavailable, so that the service's start refuses it in one line."""


class VideoWrite(Protocol):
    """One video being written. Nobody sees it under ``video_id`` until ``commit``; ``abort``
    leaves nothing of it behind, so a refused, failed or cancelled upload costs no storage."""

    video_id: str

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        ...

    def staged_source(self) -> str:
        """What ffmpeg opens to read the bytes written so far (a probe before ``commit``); no
        ``write`` may follow."""
        ...

    def commit(self) -> None:
        """Make the video visible, whole, under ``video_id``."""
        ...

    def abort(self) -> None:
        """Remove everything of this write, even once committed; safe to call more than once."""
        ...


class MediaStorage(Protocol):
    """Videos by id and each job's frames by name. Ids and names are single path components
    (no ``/``, not starting with ``.``); anything else is a ValueError."""

    # Where the media are, for messages and logs (no secret in it).
    location: str

    def free_bytes(self) -> int:
        """Room left for new media."""
        ...

    def begin_video(self) -> VideoWrite:
        """Start writing a new video under a fresh id."""
        ...

    def video_source(self, video_id: str) -> str:
        """What ffmpeg opens to read the stored video (a local path here); MediaMissing if it is
        not stored."""
        ...

    def list_videos(self) -> list[str]:
        """Ids of the stored videos (committed ones only), sorted."""
        ...

    def delete_video(self, video_id: str) -> None:
        """Remove the video; one not stored is no error."""
        ...

    def remove_abandoned_uploads(self, idle_s: float | None) -> int:
        """Remove the unfinished writes a crash left: this replica's own at any age, other
        replicas' only once idle for ``idle_s`` (None: theirs too, at any age, for an analyzer
        that is alone on its storage). How many were removed."""
        ...

    def frames_workdir(self, job_id: str) -> pathlib.Path:
        """A local directory the job's frames are decoded into, before ``keep_frame_file``."""
        ...

    def keep_frame_file(self, job_id: str, path: pathlib.Path) -> None:
        """Store the local file ``path`` as the job's frame named ``path.name``."""
        ...

    def put_frame(self, job_id: str, name: str, data: bytes) -> None:
        """Store ``data`` as the job's frame ``name``; readers see the old bytes or the new,
        never a part."""
        ...

    def get_frame(self, job_id: str, name: str) -> bytes:
        """The bytes of the job's frame ``name``; MediaMissing if it is not stored."""
        ...

    def frame_file(self, job_id: str, name: str) -> pathlib.Path:
        """A local file holding the job's frame ``name`` (for the model, which reads paths);
        MediaMissing if it is not stored."""
        ...

    def list_frames(self, job_id: str) -> list[str]:
        """Names of the job's stored frames, sorted; none stored: empty."""
        ...

    def delete_frames(self, job_id: str) -> None:
        """Remove all of the job's frames; none stored is no error."""
        ...
