"""Settings of the detector service: environment variables prefixed ``VIGIL_DETECTOR_``."""

from __future__ import annotations

import pathlib
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_model_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "vigil" / "models"


class DetectorSettings(BaseSettings):
    """Everything the detector service can be told; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_DETECTOR_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50051
    log_level: str = "INFO"
    # Seconds that in-flight calls get to finish on SIGTERM.
    grace_s: float = 5.0

    backend: Literal["yolo", "roboflow", "onnx", "none"] = "yolo"
    model_dir: pathlib.Path = Field(default_factory=default_model_dir)
    confidence: float = Field(0.3, ge=0.0, le=1.0)
    nms_iou: float = Field(0.45, ge=0.0, le=1.0)
    # Class labels counted as weapons (incidents, the analyzer's dense sampling).
    weapon_classes: list[str] = ["knife", "scissors", "baseball bat", "gun", "pistol", "rifle"]

    # The source served when a viewer asks for none.
    default_source_id: str = "default"
    jpeg_quality: int = Field(80, ge=1, le=100)
    max_fps: float = Field(15.0, gt=0.0, le=120.0)
    # Frames each subscriber may have waiting before the oldest is dropped.
    subscriber_queue: int = Field(2, ge=1, le=64)
    # Seconds a source keeps capturing after its last subscriber leaves.
    linger_s: float = Field(2.0, ge=0.0)

    roboflow_api_key: SecretStr | None = None
    roboflow_api_url: str = "https://detect.roboflow.com"
    roboflow_model_id: str = ""
