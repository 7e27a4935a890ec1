"""Settings of the analyzer service: environment variables prefixed ``VIGIL_ANALYZER_``."""

from __future__ import annotations

import pathlib
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "vigil" / "analyzer"


class AnalyzerSettings(BaseSettings):
    """Everything the analyzer service can be told; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_ANALYZER_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50052
    log_level: str = "INFO"
    # Seconds that in-flight calls get to finish on SIGTERM.
    grace_s: float = 5.0

    # Videos, frames and the job database live here.
    data_dir: pathlib.Path = Field(default_factory=default_data_dir)

    # Upload limits. Width and height are checked orientation-free (a portrait 2160x3840 passes).
    max_upload_bytes: int = Field(default=4 * 1024**3, gt=0)
    max_duration_s: float = Field(default=7200.0, gt=0.0)
    max_width: int = Field(default=3840, gt=0)
    max_height: int = Field(default=2160, gt=0)
    max_fps: float = Field(default=240.0, gt=0.0)
    # Uploads beyond this many at once are refused with RESOURCE_EXHAUSTED (retryable).
    max_concurrent_uploads: int = Field(default=4, ge=1)

    # Jobs running at once; the rest wait in a FIFO queue of at most max_queued_jobs.
    max_concurrent_jobs: int = Field(default=1, ge=1)
    max_queued_jobs: int = Field(default=64, ge=1)

    # Child processes that decode untrusted media, and how long one call may take before the
    # child is killed.
    media_workers: int = Field(default=2, ge=1)
    probe_timeout_s: float = Field(default=30.0, gt=0.0)
    sampling_timeout_s: float = Field(default=120.0, gt=0.0)

    # Sampling: the policy used when a request leaves it unspecified ("adaptive": a frame budget
    # from the model's context, scene changes preferred, dense around weapon detections; "seed":
    # the prototype's 3 frames under an hour and 8 from an hour; "uniform": evenly spaced), the
    # frame count of the uniform policy when max_frames is 0, and the most frames any request may
    # ask for (it also caps the adaptive budget).
    default_sampling_policy: Literal["adaptive", "seed", "uniform"] = "adaptive"
    uniform_frames: int = Field(default=16, ge=1)
    max_frames_limit: int = Field(default=64, ge=1)

    # The adaptive frame budget: frames x tokens_per_image must fit in the model's context, less
    # prompt_reserve_tokens for the instructions and frame labels and max_tokens for the answer:
    # budget = (max_model_len - prompt_reserve_tokens - max_tokens) // tokens_per_image, capped by
    # max_frames_limit (and the request's max_frames), at least 1. An engine that reports its own
    # ``max_model_len`` / ``tokens_per_image`` attributes wins over these two settings. Gemma 3
    # spends 256 tokens on each 896x896 image.
    max_model_len: int = Field(default=8192, ge=1)
    tokens_per_image: int = Field(default=256, ge=1)
    prompt_reserve_tokens: int = Field(default=512, ge=0)
    # The budget when no language model is configured (the frames feed the timeline only).
    no_model_frame_budget: int = Field(default=16, ge=1)
    # Candidate moments scanned per budgeted frame (by seeking, never decoding the whole video):
    # more finds more scene changes and weapons, at one seek each.
    candidate_factor: int = Field(default=4, ge=1, le=16)
    # A candidate whose small grayscale thumbnail differs from the previous candidate's by at
    # least this much (0: same picture, 1: nothing alike; the larger of the histogram distance
    # and the scaled mean pixel difference) counts as a scene change.
    scene_change_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    # Side of the grayscale thumbnails the scene-change score compares, in pixels.
    thumbnail_side: int = Field(default=64, ge=8, le=512)

    # The coarse detection pass: candidate frames go to the detector service over its gRPC
    # Detect stream. An unreachable detector never fails a job: it goes on without detections and
    # its result says so. Requests may also skip the pass (AnalysisOptions.skip_detection).
    detection_pass: bool = True
    detector_address: str = "127.0.0.1:50051"
    # Seconds to get a connection to the detector before giving up on it for this job, and
    # seconds one Detect call (all frames of one pass) may take.
    detector_connect_timeout_s: float = Field(default=2.0, gt=0.0)
    detection_timeout_s: float = Field(default=60.0, gt=0.0)
    # Extra frames decoded around each run of weapon hits (split between just before its first
    # hit and just after its last, where the event starts and ends), inside at most
    # dense_window_s on each side. Dense frames and kept hits take at most half the budget.
    dense_frames_per_hit: int = Field(default=4, ge=0, le=32)
    dense_window_s: float = Field(default=10.0, gt=0.0)

    # Sampled frames are stored as JPEGs no larger than this on their long side.
    frame_max_side: int = Field(default=1280, ge=16)
    frame_jpeg_quality: int = Field(default=85, ge=1, le=100)

    # The language model. With "none" a job still runs to the end: its result has the frames and
    # the timeline of detections and scene changes, no summary, and a note on configuring a model.
    engine: Literal["none", "vllm"] = "none"
    model: str = ""
    max_tokens: int = Field(default=1024, ge=1)
    default_prompt: str = (
        "You are a security video analyst. The images are frames of one video in time order; "
        "each is labelled with its time as [mm:ss]. Describe what happens, citing times in "
        "[mm:ss] form, and point out anything unusual or dangerous."
    )

    # A job interrupted by a restart is run again from the start on the next start-up, up to
    # this many attempts in all; past that it is marked failed (INTERRUPTED, retryable).
    max_attempts: int = Field(default=3, ge=1)

    # Live events each stream subscriber may have waiting; a slower one catches up from the store.
    subscriber_queue: int = Field(default=256, ge=1)

    @property
    def videos_dir(self) -> pathlib.Path:
        return self.data_dir / "videos"

    @property
    def jobs_dir(self) -> pathlib.Path:
        return self.data_dir / "jobs"

    @property
    def database(self) -> pathlib.Path:
        return self.data_dir / "analyzer.sqlite3"
