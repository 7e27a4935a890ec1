"""Settings of the bridge: environment variables prefixed ``VIGIL_BRIDGE_``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BridgeSettings(BaseSettings):
    """Everything the bridge can be told; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_BRIDGE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    detector_address: str = "127.0.0.1:50051"
    analyzer_address: str = "127.0.0.1:50052"

    # The source served on /ws/video-stream, which names none.
    default_source_id: str = "default"
    # Frames each viewer may have waiting before the oldest is dropped (newest wins).
    viewer_queue: Annotated[int, Field(ge=1, le=64)] = 2

    # Browser origins allowed to call the HTTP API and open WebSockets. Requests without an Origin
    # header (curl, scripts, tests) are not browsers and are always let through.
    allowed_origins: list[str] = ["http://127.0.0.1:8000", "http://localhost:8000"]

    # Seconds a backend's health check may take before /health reports it UNREACHABLE.
    health_timeout_s: Annotated[float, Field(gt=0.0)] = 1.0
    # Backoff between attempts to (re)open a detector stream: doubles from the first value up to
    # the cap, so a restarted detector is picked up within about ``retry_max_s``.
    retry_initial_s: Annotated[float, Field(gt=0.0)] = 0.25
    retry_max_s: Annotated[float, Field(gt=0.0)] = 5.0

    # Kernel send buffer per connection, in bytes (Linux caps it at net.core.wmem_max); None
    # leaves it to autotuning, which can queue megabytes, i.e. seconds of stale frames for a slow
    # viewer. 256 KiB is two frames, and still 2.5 MB/s at 100 ms round trip (see server.py).
    send_buffer_bytes: Annotated[int, Field(ge=4096)] | None = 256 * 1024

    # uvicorn's WebSocket implementation. Per-message deflate is always off: frames are JPEG, and
    # compressing them again costs milliseconds per frame for nothing.
    ws_impl: Literal["auto", "websockets", "websockets-sansio", "wsproto"] = "auto"
