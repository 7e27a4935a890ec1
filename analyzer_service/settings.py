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

    # Sampling: the policy used when a request leaves it unspecified, the frame count of the
    # uniform policy when max_frames is 0, and the most frames any request may ask for.
    default_sampling_policy: Literal["seed", "uniform"] = "seed"
    uniform_frames: int = Field(default=16, ge=1)
    max_frames_limit: int = Field(default=64, ge=1)
    # Sampled frames are stored as JPEGs no larger than this on their long side.
    frame_max_side: int = Field(default=1280, ge=16)
    frame_jpeg_quality: int = Field(default=85, ge=1, le=100)

    # The language model. "none" ends jobs after sampling with MODEL_NOT_CONFIGURED.
    engine: Literal["none", "vllm"] = "none"
    model: str = ""
    max_tokens: int = Field(default=1024, ge=1)
    default_prompt: str = (
        "You are a security video analyst. The images are frames of one video in time order; "
        "each is labelled with its time as [mm:ss]. Describe what happens, citing times in "
        "[mm:ss] form, and point out anything unusual or dangerous."
    )

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
