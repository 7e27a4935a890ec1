"""How SDK clients connect: address, TLS, bearer token, deadlines, retries and keepalive."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from vigil.core.channels import LIVE_CHANNEL_OPTIONS
from vigil.core.errors import Unavailable, retryable_statuses

DEFAULT_DETECTOR_ADDRESS = "127.0.0.1:50051"
DEFAULT_ANALYZER_ADDRESS = "127.0.0.1:50052"
USER_AGENT = "vigil-sdk/0.1"

ChannelOption = tuple[str, str | int]


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's own retries (service config), applied to unary methods only.

    Streams are not retried: a stream that already delivered messages cannot be replayed
    transparently, so callers resume them (``events(after_sequence=...)``) themselves.
    """

    # gRPC caps attempts at 5, whatever is asked.
    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0
    # From vigil.core.errors' table: the statuses every error code of which is retryable.
    status_codes: tuple[str, ...] = tuple(s.name for s in retryable_statuses())

    def as_config(self) -> dict[str, object]:
        return {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_s:.3f}s",
            "maxBackoff": f"{self.max_backoff_s:.3f}s",
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": list(self.status_codes),
        }


@dataclass(frozen=True)
class ClientOptions:
    """Everything a client needs to reach one service.

    ``timeout_s`` is the deadline of every unary call unless the call names its own; None means
    no deadline. ``wait_for_ready`` makes calls wait (up to their deadline) for a service that is
    not up yet instead of failing at once with UNAVAILABLE.
    """

    address: str
    tls: bool = False
    # PEM bytes or a path to a PEM file; None trusts the system's roots.
    root_certificates: bytes | str | os.PathLike[str] | None = None
    # The name the server's certificate must carry, when it differs from the address's host.
    server_name: str | None = None
    token: str | None = None
    timeout_s: float | None = 10.0
    wait_for_ready: bool = False
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    keepalive_time_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    max_message_bytes: int = 16 * 1024 * 1024
    extra_channel_options: tuple[ChannelOption, ...] = ()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Sent with every call."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def deadline(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s


def as_options(target: str | ClientOptions) -> ClientOptions:
    return target if isinstance(target, ClientOptions) else ClientOptions(address=target)


def service_config(
    options: ClientOptions, service: str, unary_methods: Sequence[str]
) -> str | None:
    if options.retry is None or not unary_methods:
        return None
    names = [{"service": service, "method": method} for method in unary_methods]
    config = {"methodConfig": [{"name": names, "retryPolicy": options.retry.as_config()}]}
    return json.dumps(config)


def channel_options(
    options: ClientOptions, service: str, unary_methods: Sequence[str], *, live: bool = False
) -> list[ChannelOption]:
    result: list[ChannelOption] = [
        ("grpc.primary_user_agent", USER_AGENT),
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", options.max_message_bytes),
        ("grpc.keepalive_time_ms", int(options.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(options.keepalive_timeout_s * 1000)),
        # Long streams (incidents, subscriptions) may carry no data for minutes; keep pinging
        # them so a dead peer is noticed and idle-killing middleboxes leave them alone.
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted service is picked up within seconds rather than gRPC's default of minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]
    config = service_config(options, service, unary_methods)
    if config is not None:
        result += [("grpc.enable_retries", 1), ("grpc.service_config", config)]
    if options.server_name:
        result.append(("grpc.ssl_target_name_override", options.server_name))
    if live:
        # Subscriptions want a small flow-control window so slow readers skip ahead instead of
        # falling behind (see vigil.core.channels); the caller's own limits and keepalive still win.
        ours = {key for key, _ in result}
        result += [(key, value) for key, value in LIVE_CHANNEL_OPTIONS if key not in ours]
    result += list(options.extra_channel_options)
    return result


def credentials(options: ClientOptions) -> grpc.ChannelCredentials:
    root = options.root_certificates
    if root is not None and not isinstance(root, bytes):
        root = pathlib.Path(root).read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=root)


def open_channel(
    options: ClientOptions, service: str, unary_methods: Sequence[str], *, live: bool = False
) -> grpc.Channel:
    opts = channel_options(options, service, unary_methods, live=live)
    if options.tls:
        return grpc.secure_channel(options.address, credentials(options), options=opts)
    return grpc.insecure_channel(options.address, options=opts)


def open_aio_channel(
    options: ClientOptions, service: str, unary_methods: Sequence[str], *, live: bool = False
) -> grpc.aio.Channel:
    opts = channel_options(options, service, unary_methods, live=live)
    if options.tls:
        return grpc.aio.secure_channel(options.address, credentials(options), options=opts)
    return grpc.aio.insecure_channel(options.address, options=opts)


def wait_ready(channel: grpc.Channel, timeout_s: float, address: str) -> None:
    """Block until ``channel`` is connected; Unavailable after ``timeout_s``."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise Unavailable(f"no service at {address} after {timeout_s:g} s") from None


async def wait_ready_async(channel: grpc.aio.Channel, timeout_s: float, address: str) -> None:
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)
    except TimeoutError:
        raise Unavailable(f"no service at {address} after {timeout_s:g} s") from None
