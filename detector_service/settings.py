"""Settings of the detector service: environment variables prefixed ``VIGIL_DETECTOR_``."""

from __future__ import annotations

import pathlib
import socket
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.core.ports import DETECTOR_PORT
from vigil.core.settings import GrpcServiceSettings
from vigil.core.tls import TlsClientFiles, check_client_files, client_files


def default_model_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "vigil" / "models"


class DetectorSettings(GrpcServiceSettings):
    """Everything the detector service can be told; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_DETECTOR_")

    port: int = DETECTOR_PORT

    backend: Literal["yolo", "roboflow", "onnx", "none"] = "yolo"
    model_dir: pathlib.Path = Field(default_factory=default_model_dir)
    confidence: float = Field(0.3, ge=0.0, le=1.0)
    nms_iou: float = Field(0.45, ge=0.0, le=1.0)
    # Class labels counted as weapons (incidents, the analyzer's dense sampling).
    weapon_classes: list[str] = Field(
        default_factory=lambda: ["knife", "scissors", "baseball bat", "gun", "pistol", "rifle"]
    )

    # The source served when a viewer asks for none.
    default_source_id: str = "default"
    jpeg_quality: int = Field(80, ge=1, le=100)
    max_fps: float = Field(15.0, gt=0.0, le=120.0)
    # Frames each subscriber may have waiting before the oldest is dropped.
    subscriber_queue: int = Field(2, ge=1, le=64)
    # Seconds a source keeps capturing after its last subscriber leaves.
    linger_s: float = Field(2.0, ge=0.0)
    # Seconds a stream's open may take (connect, RTSP handshake, probing to the first keyframe)
    # before it counts as failed and is retried with backoff.
    open_timeout_s: float = Field(10.0, gt=0.0, le=300.0)
    # Seconds without a frame to detect after which the model and its buffers are freed
    # (reloaded, ~0.1 s, when frames come again).
    model_idle_s: float = Field(30.0, gt=0.0)

    # Also read from the plain ROBOFLOW_API_KEY of Roboflow's own tools; the prefixed name wins.
    roboflow_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("VIGIL_DETECTOR_ROBOFLOW_API_KEY", "ROBOFLOW_API_KEY"),
    )
    roboflow_api_url: str = "https://detect.roboflow.com"
    roboflow_model_id: str = ""
    # "auto" lets inference-sdk choose from the URL: Roboflow's hosted URLs speak v0, anything else
    # (a self-hosted inference server) v1; set v0 for a proxy in front of the hosted API.
    roboflow_api_mode: Literal["auto", "v0", "v1"] = "auto"
    # "legacy" sends the key as a query parameter (v0) or in the JSON body (v1), which every server
    # accepts; "header" keeps it out of URLs but needs inference server 1.5 or newer.
    roboflow_api_key_transport: Literal["legacy", "header", "both"] = "legacy"
    # Frames sent concurrently per batch, and the seconds a whole batch (retries included) may take.
    roboflow_max_batch: int = Field(4, ge=1, le=32)
    roboflow_timeout_s: float = Field(15.0, gt=0.0)

    onnx_model_path: pathlib.Path | None = None
    # One class name per line; when set it wins over the names stored in the model.
    onnx_labels_path: pathlib.Path | None = None
    # Used only when the model's input height and width are dynamic.
    onnx_input_size: int = Field(640, ge=32, le=4096)

    # Classes to keep (None keeps all), and per-class minimum confidences (only values above
    # ``confidence`` matter: backends already drop what is below it).
    # From the environment both are JSON: '["person", "gun"]', '{"gun": 0.6}'.
    class_allow: list[str] | None = None
    class_thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict
    )

    # Seconds a tracked object may go unseen and keep its track id (longer, and it comes back
    # with a new one). In time, not frames: the detection rate varies (see tracking.py). Keep it
    # above the slowest interval at which a source with tracked objects is detected.
    track_lost_s: float = Field(5.0, gt=0.0, le=300.0)

    # Motion first (detector_service/gating.py; always-on sources only), the defaults of every
    # source's spec.motion: run the object detector on every frame instead of where and when
    # something moves; how faint a change counts as motion (0 to 1, higher sees fainter);
    # seconds between whole-frame detections while objects are tracked in a still scene (below
    # track_lost_s, or still objects lose their tracks); and the side of the smallest square
    # cropped around small motion (the model's input, 416 for YOLOv3-tiny: never upscaled).
    motion_detect_every_frame: bool = False
    motion_sensitivity: float = Field(0.5, gt=0.0, le=1.0)
    motion_refresh_s: float = Field(1.0, gt=0.0, le=300.0)
    motion_region_size: int = Field(416, ge=32, le=4096)

    # Where the incident history (SQLite) and clips live.
    data_dir: pathlib.Path = Field(
        default_factory=lambda: pathlib.Path.home() / ".cache" / "vigil" / "detector"
    )
    # A weapon class seen in incident_min_frames of the last incident_window frames opens one.
    incident_min_frames: int = Field(3, ge=1)
    incident_window: int = Field(5, ge=1)
    incident_cooldown_s: float = Field(30.0, ge=0.0)
    incident_close_after_s: float = Field(5.0, ge=0.0)
    # Incident events are POSTed here as JSON when set (retried, never blocking frames).
    incident_webhook_url: str | None = None
    # Record an annotated clip (seconds before and after the opening frame) of each incident.
    incident_clips: bool = False
    incident_clip_pre_s: float = Field(3.0, ge=0.0)
    incident_clip_post_s: float = Field(3.0, ge=0.0)
    # Days zone and camera-health events (with their snapshots) are kept.
    event_retention_days: float = Field(30.0, gt=0.0)
    # A TOML file of [[sources]] tables (id, kind, uri, loop, max_fps, ...) added at start.
    sources_file: pathlib.Path | None = None
    # Prometheus metrics over HTTP on this port of `host`; unset turns them off.
    metrics_port: int | None = None
    # Seconds of waiting to fill an inference batch while several sources are live.
    batch_wait_s: float = Field(0.004, ge=0.0, le=0.1)

    # Continuous recording of the always-on sources (detector_service/recorder.py): segments of
    # about recording_segment_s, cut at keyframes, under recording_dir (default data_dir/
    # recordings). Kept recording_days (a source's retention_days wins), while all sources
    # together stay under recording_max_gb (unset: no cap) and leave recording_min_free_gb free
    # on their disk (so the default install cannot fill it); the oldest go first, checked every
    # recording_check_s. Segments overlapping an incident (incident_recording_pre_s before it
    # opened to incident_recording_post_s after it closed) are kept incident_retention_days.
    # Replicas sharing database_url index their recordings there: give them all one
    # recording_dir on a shared volume, so any of them reads what another wrote.
    recording: bool = True
    recording_dir: pathlib.Path | None = None
    recording_segment_s: float = Field(10.0, ge=1.0, le=600.0)
    recording_days: float = Field(7.0, gt=0.0)
    recording_max_gb: float | None = Field(None, gt=0.0)
    recording_min_free_gb: float = Field(1.0, ge=0.0)
    recording_check_s: float = Field(60.0, gt=0.0)
    # Packets (or pictures) a source's recording may have waiting for the disk, in MB; beyond
    # it the recording is cut (a gap, logged and counted) and resumes at the next keyframe.
    recording_buffer_mb: float = Field(32.0, gt=0.0, le=4096.0)
    incident_retention_days: float = Field(30.0, gt=0.0)
    incident_recording_pre_s: float = Field(10.0, ge=0.0, le=600.0)
    incident_recording_post_s: float = Field(10.0, ge=0.0, le=600.0)
    # The longest range one ExportRecording may ask for, and how long an export stays cached
    # for the range requests that follow it.
    export_max_s: float = Field(3600.0, gt=0.0)
    export_cache_s: float = Field(60.0, ge=0.0)
    # The Ed25519 key (PEM, PKCS#8, mode 0600) that signs incident evidence packages; unset:
    # a key the service makes once in data_dir (detector_service/evidence_key.py).
    evidence_key_file: pathlib.Path | None = None
    # Camera health (tamper and failure) checks of webcams and streams, on a copy subsampled to
    # at most health_height rows, health_checks_per_s times a second (0 turns them off). A
    # problem is raised once it has lasted its *_after_s and cleared once gone health_clear_after_s.
    health_checks_per_s: float = Field(2.0, ge=0.0, le=30.0)
    health_height: int = Field(360, ge=32, le=2160)
    health_frozen_after_s: float = Field(10.0, ge=0.0)
    health_covered_after_s: float = Field(5.0, ge=0.0)
    health_defocus_after_s: float = Field(30.0, ge=0.0)
    health_moved_after_s: float = Field(10.0, ge=0.0)
    health_clear_after_s: float = Field(3.0, ge=0.0)
    # Defocused below this fraction of the camera's own sharpness; moved below this similarity
    # (0..1) of the picture's edges with its reference view.
    health_defocus_ratio: float = Field(0.35, ge=0.0, le=1.0)
    health_moved_min_similarity: float = Field(0.5, ge=0.0, le=1.0)
    # Covered: a picture whose contrast (grey-level deviation) or brightness is below these.
    health_covered_max_contrast: float = Field(6.0, ge=0.0)
    health_black_max_brightness: float = Field(10.0, ge=0.0)
    # Seconds a PTZ camera's picture must be still after a move before its new view is learnt.
    health_ptz_settle_s: float = Field(5.0, ge=0.0)

    # Verified weapon alerts (detector_service/verification.py): when a weapon incident opens,
    # its snapshot, a few frames before it and full-resolution crops of its weapon boxes (at most
    # verification_max_pictures in all) go to the analyzer at analyzer_url (host:port; empty turns
    # verification off: incidents are not verified, as before; the same analyzer checks watch
    # rules, and a gRPC target naming replicas works too: dns:///analyzer:50052). analyzer_token
    # is its bearer token (unset: this service's own token is sent).
    # verification_workers calls run at once; verification_queue incidents may wait (a
    # full queue leaves the newest PENDING in the store for the retry sweep). An unreachable
    # analyzer is retried with backoff from verification_retry_initial_s up to
    # verification_retry_max_s; an incident still unverified verification_give_up_s after it
    # opened is SKIPPED (and then alerts whatever the policy, as an unverifiable weapon must).
    # verification_temperature and verification_seed set the model's sampling for each check
    # (unset: the analyzer's defaults); a seed with a temperature makes verdicts repeatable.
    analyzer_url: str = ""
    analyzer_token: SecretStr | None = None
    verification_timeout_s: float = Field(60.0, gt=0.0)
    verification_workers: int = Field(2, ge=1, le=64)
    verification_queue: int = Field(64, ge=1, le=10_000)
    verification_max_pictures: int = Field(4, ge=2, le=16)
    verification_frames: int = Field(2, ge=0, le=8)
    verification_retry_initial_s: float = Field(1.0, gt=0.0)
    verification_retry_max_s: float = Field(30.0, gt=0.0)
    verification_give_up_s: float = Field(600.0, gt=0.0)
    verification_temperature: float | None = Field(None, ge=0.0, le=2.0)
    verification_seed: int | None = Field(None, ge=0)
    # When weapon incidents alert people (the webhook, the page's toasts) for sources whose spec
    # leaves alert_policy unset: at opening, only once the model confirmed it, or both. With
    # verification off, "when_confirmed" alerts at opening (no verdict would ever come).
    alert_policy: Literal["at_opening", "when_confirmed", "both"] = "at_opening"
    # Watch rules (detector_service/watch_rules.py): checks waiting for the analyzer (beyond it
    # the oldest is dropped and counted), checks in flight at once, pictures per check (the
    # candidate's recent frames, a second apart), seconds one check may take, and seconds after
    # a rule's incident closed before the rule may open another.
    watch_rule_queue: int = Field(64, ge=1, le=10000)
    watch_rule_concurrency: int = Field(4, ge=1, le=64)
    watch_rule_frames: int = Field(3, ge=1, le=8)
    watch_rule_timeout_s: float = Field(30.0, gt=0.0)
    watch_rule_cooldown_s: float = Field(60.0, ge=0.0)
    # Sampling of the checks (unset: the analyzer's defaults); a seed makes answers repeatable.
    watch_rule_seed: int | None = Field(None, ge=0)
    watch_rule_temperature: float | None = Field(None, ge=0.0, le=2.0)
    # TLS to the analyzer (vigil.core.tls; this service's own is tls_*_file): its certificate
    # verified against analyzer_tls_ca_file (unset: the system's roots), and for mutual TLS this
    # certificate and key presented. Any of them set turns TLS on; unset: plaintext.
    analyzer_tls_ca_file: pathlib.Path | None = None
    analyzer_tls_cert_file: pathlib.Path | None = None
    analyzer_tls_key_file: pathlib.Path | None = None
    # Replicas (detector_service/ownership.py): with a postgresql:// URL the sources, incidents
    # and the event log live in that database, shared by every replica naming it, and each
    # source is run by the one replica holding its lease, renewed every lease_renew_s; a replica
    # that dies loses its sources to the others within about lease_s + lease_renew_s. lease_s
    # spans at least three renewals, so a busy machine does not hand a healthy replica's sources
    # away. replica_id names this replica (empty: the host's name; two must not share one);
    # advertise_address is where clients reach it when another replica sends them here (empty:
    # this host's name and port).
    database_url: SecretStr = SecretStr("")
    database_pool_size: int = Field(4, ge=1, le=64)
    database_connect_timeout_s: float = Field(10.0, gt=0.0)
    replica_id: str = ""
    lease_s: float = Field(6.0, gt=0.0)
    lease_renew_s: float = Field(1.5, gt=0.0)
    advertise_address: str = ""

    @property
    def replica(self) -> str:
        return self.replica_id or socket.gethostname()

    @model_validator(mode="after")
    def _leases_outlast_renewals(self) -> DetectorSettings:
        if self.lease_s < 3 * self.lease_renew_s:
            raise ValueError("lease_s must be at least three times lease_renew_s")
        return self

    @model_validator(mode="after")
    def _refresh_within_track_life(self) -> DetectorSettings:
        if self.motion_refresh_s >= self.track_lost_s:
            raise ValueError(
                f"motion_refresh_s ({self.motion_refresh_s:g}) must be below track_lost_s "
                f"({self.track_lost_s:g}): still objects would lose their tracks between refreshes"
            )
        return self

    @model_validator(mode="after")
    def _retries_grow(self) -> DetectorSettings:
        if self.verification_retry_max_s < self.verification_retry_initial_s:
            raise ValueError("verification_retry_max_s must not be below the initial retry delay")
        return self

    @model_validator(mode="after")
    def _analyzer_tls_usable(self) -> DetectorSettings:
        check_client_files(self.analyzer_tls)
        return self

    @property
    def analyzer_tls(self) -> TlsClientFiles | None:
        """How the analyzer is reached over TLS; None: plaintext."""
        return client_files(
            self.analyzer_tls_ca_file, self.analyzer_tls_cert_file, self.analyzer_tls_key_file
        )
