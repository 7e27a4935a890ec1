"""Settings of the bridge: environment variables prefixed ``VIGIL_BRIDGE_``."""

from __future__ import annotations

import pathlib
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from vigil.core.backoff import Backoff
from vigil.core.ports import ANALYZER_ADDRESS, BRIDGE_PORT, BRIDGE_URL, DETECTOR_ADDRESS
from vigil.core.settings import ServiceSettings
from vigil.core.tls import TlsClientFiles, check_client_files, client_files


class BridgeSettings(ServiceSettings):
    """Everything the bridge can be told; every field has a working default.

    The bearer ``token`` (of :class:`ServiceSettings`): when set, every HTTP request except
    /health needs ``Authorization: Bearer <token>``; WebSockets present it at the handshake, as
    that header or as ``?token=`` (browsers cannot set headers on WebSockets); Socket.IO clients
    may also send it in their ``auth`` payload. The bridge passes it on to the gRPC backends as
    ``authorization`` metadata.
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_BRIDGE_")

    port: int = BRIDGE_PORT
    # Seconds that requests in flight (an upload, a chat answer) get to finish on SIGTERM; new
    # connections are refused at once and WebSockets are closed (1012, service restart).
    grace_s: Annotated[float, Field(gt=0.0)] = 5.0

    # host:port, or a gRPC target naming replicas (dns:///detector:50051,
    # ipv4:10.0.0.5:50051,10.0.0.6:50051): calls go round robin over those SERVING (vigil.sdk).
    detector_address: str = DETECTOR_ADDRESS
    analyzer_address: str = ANALYZER_ADDRESS

    # Redis shared by the bridge's replicas (redis://[:password@]host:6379/0, rediss:// for TLS):
    # session names bound to jobs live there, and Socket.IO emits reach clients connected to any
    # replica (python-socketio's Redis manager). Empty: one bridge, all of it in its memory.
    redis_url: SecretStr = SecretStr("")

    # The source served on /ws/video-stream, which names none.
    default_source_id: str = "default"
    # Frames each viewer may have waiting before the oldest is dropped (newest wins).
    viewer_queue: Annotated[int, Field(ge=1, le=64)] = 2

    # Browser origins allowed to call the HTTP API and open WebSockets. Requests without an Origin
    # header (curl, scripts, tests) are not browsers and are always let through.
    allowed_origins: list[str] = Field(
        default_factory=lambda: [BRIDGE_URL, f"http://localhost:{BRIDGE_PORT}"]
    )

    # Seconds a backend's health check may take before /health reports it UNREACHABLE.
    health_timeout_s: Annotated[float, Field(gt=0.0)] = 1.0
    # Backoff between attempts to (re)open a detector stream: doubles from the first value up to
    # the cap, so a restarted detector is picked up within about ``retry_max_s``. The cap is low
    # because a source whose detector replica died answers "moving between replicas" from the
    # others until its lease runs out: retried at a 5 s cap, its viewers could wait up to 5 s past
    # the takeover (12 s after the death with the default leases, over the 10 s goal). A dead
    # lone detector is not hammered: after the first failure each attempt waits for the channel,
    # whose reconnects are paced by gRPC's own backoff.
    retry_initial_s: Annotated[float, Field(gt=0.0)] = 0.25
    retry_max_s: Annotated[float, Field(gt=0.0)] = 1.0

    # The page's live-view and session reconnect policy, handed to it in index.html: after a
    # dropped connection it tries this many times, waiting ``reconnect_initial_s`` before the first
    # try and twice as long before each next one (1 s, 2 s, 4 s), then gives up and says so.
    reconnect_tries: Annotated[int, Field(ge=0, le=20)] = 3
    reconnect_initial_s: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0

    # Kernel send buffer per connection, in bytes (Linux doubles it, capped by
    # net.core.wmem_max); None leaves it to autotuning, which can queue megabytes. Slow viewers
    # are handled per frame instead (video.py skips a frame while more than one is still unsent),
    # so this only bounds memory: 256 KiB still carries 2.5 MB/s at a 100 ms round trip.
    send_buffer_bytes: Annotated[int, Field(ge=4096)] | None = 256 * 1024

    # uvicorn's WebSocket implementation. Per-message deflate is always off: frames are JPEG, and
    # compressing them again costs milliseconds per frame for nothing.
    ws_impl: Literal["auto", "websockets", "websockets-sansio", "wsproto"] = "auto"

    # Largest incoming WebSocket message in bytes; a bigger one closes the socket with 1009.
    # Browsers only send small control messages; frames go the other way and are not limited.
    ws_max_message_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024
    # Incoming WebSocket messages per second per connection (token bucket of ``ws_message_burst``);
    # a client over it is closed with 1008 and a reason.
    ws_message_rate: Annotated[float, Field(gt=0.0)] = 20.0
    ws_message_burst: Annotated[int, Field(ge=1)] = 40
    # WebSockets (frames, sessions, Socket.IO) open at once per client address; one more is
    # accepted and closed at once with 1013 "try again later" and a reason.
    max_connections_per_client: Annotated[int, Field(ge=1)] = 32
    # WebSocket keepalive: a ping every ``ws_ping_interval_s``; a peer that has not answered
    # within ``ws_ping_timeout_s`` (its host vanished without closing) is disconnected, which
    # frees its slot under ``max_connections_per_client`` and its viewer or session.
    ws_ping_interval_s: Annotated[float, Field(gt=0.0)] = 20.0
    ws_ping_timeout_s: Annotated[float, Field(gt=0.0)] = 20.0

    # Largest upload the bridge forwards, in bytes; larger ones get 413 before any byte is read
    # (the analyzer enforces its own limit as well).
    max_upload_bytes: Annotated[int, Field(ge=1)] = 4 * 1024**3
    # Size of the chunks an upload is forwarded to the analyzer in.
    upload_chunk_bytes: Annotated[int, Field(ge=4096, le=4 * 1024 * 1024)] = 1024 * 1024
    # Seconds a connection has to send a request's complete headers (from its opening, or from
    # the request's first byte); past that it is closed. Without it a connection that never
    # finishes its headers (or its WebSocket upgrade request) would be held for ever.
    header_timeout_s: Annotated[float, Field(gt=0.0)] = 10.0
    # An upload whose body sends nothing for this long ends with 408 (IDLE_TIMEOUT): the
    # analyzer's side is cancelled, its slot freed and nothing of it kept. Idleness is the time
    # since the last bytes arrived, not the upload's total duration.
    upload_idle_timeout_s: Annotated[float, Field(gt=0.0)] = 30.0
    # Reverse proxies in front of the bridge (addresses or CIDRs). A request whose socket peer is
    # one of them is counted as the client ``X-Forwarded-For`` names (the nearest address that is
    # not itself a trusted proxy); from anyone else that header is ignored. The client counts for
    # the per-client share of upload slots (passed to the analyzer) and for
    # ``max_connections_per_client``. Empty: the socket peer is always the client.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # Seconds a unary gRPC call from the HTTP API may take.
    rpc_timeout_s: Annotated[float, Field(gt=0.0)] = 30.0

    # TLS to the detector and the analyzer (vigil.core.tls): their certificates verified against
    # backend_tls_ca_file (unset: the system's roots), and for mutual TLS this certificate and
    # key presented. Any of them set turns TLS on; unset: plaintext. Browsers' TLS ends at the
    # ingress in front of the bridge.
    backend_tls_ca_file: pathlib.Path | None = None
    backend_tls_cert_file: pathlib.Path | None = None
    backend_tls_key_file: pathlib.Path | None = None

    @model_validator(mode="after")
    def _backend_tls_usable(self) -> BridgeSettings:
        check_client_files(self.backend_tls)
        return self

    @property
    def backend_tls(self) -> TlsClientFiles | None:
        """How the backends are reached over TLS; None: plaintext."""
        return client_files(
            self.backend_tls_ca_file, self.backend_tls_cert_file, self.backend_tls_key_file
        )

    def retry_backoff(self) -> Backoff:
        """A fresh schedule for one loop that retries a backend (a feed, a followed job)."""
        # A cap below the first delay means "never wait longer than the first delay".
        return Backoff(self.retry_initial_s, max(self.retry_initial_s, self.retry_max_s))

    @field_validator("allowed_origins")
    @classmethod
    def _no_wildcard_with_others(cls, value: list[str]) -> list[str]:
        # CORS never allows credentials here (the token travels in a header, not a cookie), so
        # "*" is legal; but mixing it with named origins is a misunderstanding worth refusing.
        if "*" in value and len(value) > 1:
            raise ValueError('"*" allows every origin; list origins or use "*" alone')
        return value
