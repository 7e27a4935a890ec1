"""How SDK clients connect: address, TLS, bearer token, deadlines, retries and keepalive."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from vigil.core import channels, ports
from vigil.core.channels import ChannelOption
from vigil.core.errors import Unavailable, retryable_statuses
from vigil.core.tls import TlsClientFiles, channel_credentials

DEFAULT_DETECTOR_ADDRESS = ports.DETECTOR_ADDRESS
DEFAULT_ANALYZER_ADDRESS = ports.ANALYZER_ADDRESS
USER_AGENT = "vigil-sdk/0.1"


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
    not up yet instead of failing at once with UNAVAILABLE. Keepalive and reconnect defaults are
    ``vigil.core.channels``'.

    ``address`` is ``host:port`` or a gRPC target naming replicas (``dns:///host:port``,
    ``ipv4:10.0.0.5:50052,10.0.0.6:50052``): calls go round robin over them. With
    ``health_checked`` only replicas whose health is SERVING get new calls; a lone replica that is
    NOT_SERVING (draining, its model failing) then answers UNAVAILABLE until it is back. Unset, it
    is on for targets naming replicas and off for a plain ``host:port``, so the single box keeps
    its answers (listing jobs while the model is down, say). ``health``, ``connect`` and
    ``wait_until_ready`` ask every replica regardless.

    With ``tls`` the service is verified against ``root_certificates`` (the system's roots
    unless given) and, for a service wanting mutual TLS, ``certificate_chain`` and
    ``private_key`` are presented; files are read when the channel opens (``vigil.core.tls``,
    ``with_tls`` from a service's client settings).
    """

    address: str
    tls: bool = False
    # PEM bytes or a path to a PEM file; None trusts the system's roots.
    root_certificates: bytes | str | os.PathLike[str] | None = None
    # The name the server's certificate must carry, when it differs from the address's host.
    server_name: str | None = None
    # The client certificate (PEM, its chain after it) and key presented to a service wanting
    # mutual TLS: bytes or paths, both or neither.
    certificate_chain: bytes | str | os.PathLike[str] | None = None
    private_key: bytes | str | os.PathLike[str] | None = None
    token: str | None = None
    timeout_s: float | None = 10.0
    wait_for_ready: bool = False
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)
    keepalive_time_s: float = channels.KEEPALIVE_TIME_S
    keepalive_timeout_s: float = channels.KEEPALIVE_TIMEOUT_S
    # gRPC's own backoff between attempts to reconnect a channel: from the first, doubling, up
    # to the cap.
    reconnect_initial_s: float = channels.RECONNECT_INITIAL_S
    reconnect_max_s: float = channels.RECONNECT_MAX_S
    max_message_bytes: int = channels.MAX_MESSAGE_BYTES
    extra_channel_options: tuple[ChannelOption, ...] = ()
    health_checked: bool | None = None

    @property
    def checks_health(self) -> bool:
        """Whether new calls skip replicas that are not SERVING (see ``health_checked``)."""
        if self.health_checked is not None:
            return self.health_checked
        return self.address.startswith(("dns:", "ipv4:", "ipv6:")) or "," in self.address

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Sent with every call."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def deadline(self, timeout_s: float | None) -> float | None:
        return self.timeout_s if timeout_s is None else timeout_s


def as_options(target: str | ClientOptions) -> ClientOptions:
    return target if isinstance(target, ClientOptions) else ClientOptions(address=target)


def service_config(
    options: ClientOptions, service: str, unary_methods: Sequence[str], *, health_checked: bool
) -> str:
    """Round robin over every address the target resolves to (``dns:///``, ``ipv4:`` lists);
    ``health_checked`` adds gRPC's client-side health checking, which keeps new calls off a
    replica whose ``service`` is not SERVING (``vigil.core.channels``)."""
    config: dict[str, object] = {"loadBalancingConfig": channels.LOAD_BALANCING}
    if health_checked:
        config["healthCheckConfig"] = {"serviceName": service}
    if options.retry is not None and unary_methods:
        names = [{"service": service, "method": method} for method in unary_methods]
        config["methodConfig"] = [{"name": names, "retryPolicy": options.retry.as_config()}]
    return json.dumps(config)


def channel_options(
    options: ClientOptions,
    service: str,
    unary_methods: Sequence[str],
    *,
    live: bool = False,
    health_checked: bool = True,
) -> list[ChannelOption]:
    result: list[ChannelOption] = [("grpc.primary_user_agent", USER_AGENT)]
    # Subscriptions get a small flow-control window so slow readers skip ahead instead of
    # falling behind (see vigil.core.channels).
    result += channels.channel_options(
        max_message_bytes=options.max_message_bytes,
        keepalive_time_s=options.keepalive_time_s,
        keepalive_timeout_s=options.keepalive_timeout_s,
        reconnect_initial_s=options.reconnect_initial_s,
        reconnect_max_s=options.reconnect_max_s,
        live=live,
    )
    checked = health_checked and options.checks_health
    config = service_config(options, service, unary_methods, health_checked=checked)
    result += [("grpc.enable_retries", 1), ("grpc.service_config", config)]
    if options.server_name:
        result.append(("grpc.ssl_target_name_override", options.server_name))
    result += list(options.extra_channel_options)
    return result


def with_tls(options: ClientOptions, files: TlsClientFiles | None) -> ClientOptions:
    """``options`` over TLS from a service's client settings (``vigil.core.tls``): the server
    verified against ``files.ca``, ``files.cert`` presented; unchanged (plaintext) for None."""
    if files is None:
        return options
    return dataclasses.replace(
        options,
        tls=True,
        root_certificates=files.ca,
        certificate_chain=files.cert,
        private_key=files.key,
    )


def credentials(options: ClientOptions) -> grpc.ChannelCredentials:
    """TlsConfigError (an InvalidInput) when a file cannot be read or is not PEM."""
    return channel_credentials(
        options.root_certificates, options.certificate_chain, options.private_key
    )


def open_channel(
    options: ClientOptions,
    service: str,
    unary_methods: Sequence[str],
    *,
    live: bool = False,
    health_checked: bool = True,
) -> grpc.Channel:
    opts = channel_options(
        options, service, unary_methods, live=live, health_checked=health_checked
    )
    if options.tls:
        return grpc.secure_channel(options.address, credentials(options), options=opts)
    return grpc.insecure_channel(options.address, options=opts)


def open_aio_channel(
    options: ClientOptions,
    service: str,
    unary_methods: Sequence[str],
    *,
    live: bool = False,
    health_checked: bool = True,
) -> grpc.aio.Channel:
    opts = channel_options(
        options, service, unary_methods, live=live, health_checked=health_checked
    )
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


async def connect_async(
    channel: grpc.aio.Channel, timeout_s: float, address: str, name: str = "service"
) -> None:
    """Return once ``channel`` is connected. Unlike ``wait_ready_async``, a refused connection
    fails at once instead of waiting through gRPC's reconnect backoff; an address that swallows
    packets fails after ``timeout_s``. ``name`` says what the service is, in the messages."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            raise Unavailable(f"the {name} at {address} refused the connection")
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise Unavailable(f"no connection to the {name} at {address} within {timeout_s:g} s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        state = channel.get_state(try_to_connect=True)
