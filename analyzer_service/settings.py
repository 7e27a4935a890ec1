"""Settings of the analyzer service: environment variables prefixed ``VIGIL_ANALYZER_``."""

from __future__ import annotations

import pathlib
import socket
from ipaddress import ip_network
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.core.ports import ANALYZER_PORT, DETECTOR_ADDRESS
from vigil.core.settings import GrpcServiceSettings
from vigil.core.tls import TlsClientFiles, check_client_files, client_files


def default_data_dir() -> pathlib.Path:
    return pathlib.Path.home() / ".cache" / "vigil" / "analyzer"


class AnalyzerSettings(GrpcServiceSettings):
    """Everything the analyzer service can be told; every field has a working default."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_ANALYZER_")

    port: int = ANALYZER_PORT
    # Prometheus metrics over HTTP on this port of `host` (``vigil run`` sets 9102); unset turns
    # them off.
    metrics_port: int | None = None

    # The job database (SQLite) lives here, and videos and frames unless storage_url says where.
    data_dir: pathlib.Path = Field(default_factory=default_data_dir)
    # Where uploaded videos and sampled frames are kept instead of data_dir: ``file:///path``, a
    # directory every replica mounts (replicas run each other's jobs and answer chat on each
    # other's frames, so they must all see the media). Empty: data_dir. Other schemes (object
    # storage) are refused at the start: not built yet (analyzer_service/media_storages.py).
    storage_url: str = ""
    # Jobs, events and chat in PostgreSQL instead of the SQLite file in data_dir: a libpq URL
    # (``postgresql://user:password@host:5432/vigil``). Never logged with its password. Empty:
    # SQLite. Any number of analyzers may share one PostgreSQL database: they take jobs from one
    # queue (see the leases below). The pool holds up to database_pool_size connections; the
    # start gives up after database_connect_timeout_s.
    database_url: SecretStr = SecretStr("")
    database_pool_size: int = Field(default=8, ge=1)
    database_connect_timeout_s: float = Field(default=10.0, gt=0.0)

    # Upload limits. Width and height are checked orientation-free (a portrait 2160x3840 passes).
    max_upload_bytes: int = Field(default=4 * 1024**3, gt=0)
    max_duration_s: float = Field(default=7200.0, gt=0.0)
    max_width: int = Field(default=3840, gt=0)
    max_height: int = Field(default=2160, gt=0)
    max_fps: float = Field(default=240.0, gt=0.0)
    # Uploads beyond this many at once are refused with RESOURCE_EXHAUSTED (retryable).
    max_concurrent_uploads: int = Field(default=4, ge=1)
    # Uploads one client may have in progress at once (unset: half of max_concurrent_uploads,
    # rounded up), so that a few stalled or slow uploads of one client cannot lock everyone else
    # out; one more from that client is refused with RESOURCE_EXHAUSTED (retryable).
    max_uploads_per_client: int | None = Field(default=None, ge=1)
    # An upload that sends nothing for this long (no header, no next chunk) ends with
    # DEADLINE_EXCEEDED (IDLE_TIMEOUT); its slot is freed and nothing of it is kept. Idleness is
    # the time since the last message, not the upload's total duration.
    upload_idle_timeout_s: float = Field(default=30.0, gt=0.0)
    # Peers allowed to name the client an upload is for (``x-vigil-client`` metadata): the
    # bridge, which uploads on behalf of every browser. Anyone else is counted by its own
    # address. Loopback by default: the analyzer listens on 127.0.0.1 and ``vigil run`` puts the
    # bridge beside it; a process on the same host could also claim any client name, but such a
    # process can already reach the analyzer directly. Empty: never believe the key.
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")]
    )

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
    # max_frames_limit, max_images (a model's) and the request's max_frames, at least 1. An engine
    # that reports its own ``max_model_len`` / ``tokens_per_image`` / ``max_images`` attributes
    # wins over these settings. Gemma 3
    # spends 256 tokens on each 896x896 image, plus about 8 for the block's markers and the frame's
    # time label.
    max_model_len: int = Field(default=8192, ge=1)
    tokens_per_image: int = Field(default=264, ge=1)
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
    # host:port or a gRPC target naming replicas (dns:///detector:50051, ipv4:a:p,b:p).
    detector_address: str = DETECTOR_ADDRESS
    # The token the detector service wants (its VIGIL_DETECTOR_TOKEN); unset: this service's own
    # ``token`` is sent, which suits one token for all services (``vigil run`` with VIGIL_TOKEN).
    detector_token: SecretStr | None = None
    # Seconds to get a connection to the detector before giving up on it for this job, and
    # seconds one Detect call (all frames of one pass) may take.
    detector_connect_timeout_s: float = Field(default=2.0, gt=0.0)
    detection_timeout_s: float = Field(default=60.0, gt=0.0)
    # Analyses of a camera's recording (StartAnalysis with a range): the longest range one may
    # ask for (the detector's VIGIL_DETECTOR_EXPORT_MAX_S must allow it too), and seconds the
    # detector service may take to export and send it. The fetched file is then held to the
    # upload limits above. Recordings are fetched from detector_address even when the
    # detection pass is off.
    max_recording_range_s: float = Field(default=3600.0, gt=0.0)
    recording_fetch_timeout_s: float = Field(default=300.0, gt=0.0)
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
    # "vllm" runs vLLM's AsyncLLM in this process (its engine core in child processes; needs
    # ``pip install 'vigil[llm]'``); "vllm-http" uses a vLLM OpenAI-compatible server at vllm_url.
    engine: Literal["none", "vllm", "vllm-http"] = "none"
    # The model: a Hugging Face id or a local checkpoint directory for "vllm"; for "vllm-http" the
    # name the server serves it under (its --served-model-name, else its --model).
    model: str = "google/gemma-3-4b-it"
    # The name results report for the model; empty: ``model`` itself ("vllm" only).
    served_model_name: str = ""
    # The vLLM OpenAI-compatible server of "vllm-http" (8001: the bridge listens on 8000), or
    # several separated by commas (requests go to the least busy one up, failing over), and the
    # API key they were started with (their --api-key); never logged.
    vllm_url: str = "http://127.0.0.1:8001"
    vllm_api_key: SecretStr | None = None
    # Weights' dtype ("auto": the checkpoint's; CPUs want "bfloat16"), the context length the
    # engine is started with, and the most images one prompt may carry (vLLM's
    # limit_mm_per_prompt): also the most frames the model sees per analysis or chat answer.
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_images: int = Field(default=16, ge=1)
    # Sampling: low temperature keeps summaries factual.
    temperature: float = Field(default=0.2, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    # "vllm-http": seconds to connect, and the longest silence between two streamed pieces (the
    # first comes after the whole prompt is read, frames included).
    request_timeout_s: float = Field(default=120.0, gt=0.0)
    # False for a text-only model: prompts then carry the timestamped timeline of detections and
    # scene changes instead of frames. An engine that knows (``accepts_images``) overrides True.
    model_accepts_images: bool = True
    # Most tokens of a summary; a chat answer gets chat_max_tokens unless its request asks for
    # fewer (or more, up to max_tokens).
    max_tokens: int = Field(default=1024, ge=1)
    chat_max_tokens: int = Field(default=512, ge=1)
    # Earlier questions and answers of a job's conversation that go into the prompt of the next
    # one (all are stored), and the longest question accepted, in characters.
    chat_history_turns: int = Field(default=6, ge=0)
    max_question_chars: int = Field(default=4000, ge=1)
    # The engine's health is checked this often; while it fails the service reports NOT_SERVING,
    # running inference fails with UNAVAILABLE (retryable), and chat is refused at once.
    engine_health_interval_s: float = Field(default=1.0, gt=0.0)
    # A health check taking longer than this is late; three late in a row fail the engine (one
    # late answer from a busy server is not a dead engine).
    engine_health_timeout_s: float = Field(default=3.0, gt=0.0)
    # Generations the engine runs at once (vLLM batches them); the others wait in the service's
    # scheduler: verifications of alerts first, then chat, then watch rules, then analyses, the
    # sources, rules and jobs of one class taking turns. Fewer lets an urgent request in sooner,
    # more gives the engine bigger batches. At most engine_max_waiting requests of one class wait
    # (engine_max_waiting_per_key of one source, rule or job); one more is refused with
    # RESOURCE_EXHAUSTED (OVERLOADED, retryable).
    engine_concurrency: int = Field(default=16, ge=1)
    engine_max_waiting: int = Field(default=256, ge=1)
    engine_max_waiting_per_key: int = Field(default=32, ge=1)
    default_prompt: str = (
        "You are a security video analyst. The images are frames of one video in time order; "
        "each is labelled with its time as [mm:ss]. Describe what happens, citing times in "
        "[mm:ss] form, and point out anything unusual or dangerous."
    )

    # A job interrupted by a restart or a replica's death is run again from the start (by this
    # analyzer started again, or by another replica on the same database), up to this many
    # attempts in all; past that it is marked failed (INTERRUPTED, retryable).
    max_attempts: int = Field(default=3, ge=1)

    # Replicas sharing a database: a replica holds a lease on each job it runs, renewed every
    # lease_renew_s; a lease not renewed for lease_s (a replica dead or stalled) lets another
    # replica take the job over. lease_s spans at least three renewals, so a busy machine that
    # renews late does not lose its jobs. Replicas also look for waiting jobs every
    # lease_renew_s (at once when PostgreSQL tells them of one). replica_id names this replica
    # in the leases; empty: the host's name. Two replicas must not share one (an analyzer
    # started again under its old name takes its jobs back at once).
    lease_s: float = Field(default=15.0, gt=0.0)
    lease_renew_s: float = Field(default=3.0, gt=0.0)
    replica_id: str = ""

    # Live events each stream subscriber may have waiting; a slower one catches up from the store.
    subscriber_queue: int = Field(default=256, ge=1)

    # TLS to the detector (vigil.core.tls; this service's own is tls_*_file): its certificate
    # verified against detector_tls_ca_file (unset: the system's roots), and for mutual TLS this
    # certificate and key presented. Any of them set turns TLS on; unset: plaintext.
    detector_tls_ca_file: pathlib.Path | None = None
    detector_tls_cert_file: pathlib.Path | None = None
    detector_tls_key_file: pathlib.Path | None = None
    # Alert verification and watch-rule checks: the most pictures one call may give the model
    # (the model's max_images caps it too) and the largest picture accepted, in bytes.
    max_check_pictures: int = Field(default=8, ge=1)
    max_picture_bytes: int = Field(default=8 * 1024**2, ge=1)

    @model_validator(mode="after")
    def _leases_outlast_renewals(self) -> AnalyzerSettings:
        if self.lease_s < 3 * self.lease_renew_s:
            raise ValueError("lease_s must be at least three times lease_renew_s")
        return self

    @model_validator(mode="after")
    def _detector_tls_usable(self) -> AnalyzerSettings:
        check_client_files(self.detector_tls)
        return self

    @property
    def detector_tls(self) -> TlsClientFiles | None:
        """How the detector is reached over TLS; None: plaintext."""
        return client_files(
            self.detector_tls_ca_file, self.detector_tls_cert_file, self.detector_tls_key_file
        )

    @property
    def replica(self) -> str:
        return self.replica_id or socket.gethostname()

    @property
    def upload_share(self) -> int:
        """Upload slots one client may hold at once."""
        share = self.max_uploads_per_client or -(-self.max_concurrent_uploads // 2)
        return min(share, self.max_concurrent_uploads)

    # Where the default media storage (storage_url empty) keeps videos and frames. The service
    # itself reaches its media through media_storages only; these name the places for tools.
    @property
    def videos_dir(self) -> pathlib.Path:
        return self.data_dir / "videos"

    @property
    def jobs_dir(self) -> pathlib.Path:
        return self.data_dir / "jobs"

    @property
    def database(self) -> pathlib.Path:
        return self.data_dir / "analyzer.sqlite3"
