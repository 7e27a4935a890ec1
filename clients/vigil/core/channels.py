"""gRPC channel options for Vigil's clients: the one place that sets message sizes, keepalive,
reconnect backoff, the live-stream window and how calls spread over replicas
(``vigil.sdk.options`` fills them in per client).

A target may name several replicas: ``dns:///analyzer:50052`` (every address the name resolves
to, re-resolved as replicas come and go) or a static list, ``ipv4:10.0.0.5:50052,10.0.0.6:50052``.
Calls go round robin over the replicas whose gRPC health (``grpc.health.v1``, watched by the
channel itself) is SERVING: a replica that drains on SIGTERM or whose model fails turns
NOT_SERVING (``vigil.core.serving``) and gets no new calls while it finishes those in flight.
"""

from __future__ import annotations

ChannelOption = tuple[str, str | int]

# Sized for JPEG frames and upload chunks; the services' own limit too (``vigil.core.serving``).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# A ping after 20 s of silence, 10 s for its answer: a vanished service is noticed in ~30 s.
KEEPALIVE_TIME_S = 20.0
KEEPALIVE_TIMEOUT_S = 10.0
# For a gateway whose users wait on its streams (the bridge): a ping after 6 s, 4 s for its
# answer, so a backend that froze (or whose host vanished) fails its open streams within about
# 10 s. The services accept pings every 5 s or more (``vigil.core.serving``); faster would get
# the connection closed for "too many pings".
GATEWAY_KEEPALIVE_TIME_S = 6.0
GATEWAY_KEEPALIVE_TIMEOUT_S = 4.0

# gRPC's own reconnect backoff grows to 120 s by default; a restarted service is picked up within
# seconds with these.
RECONNECT_INITIAL_S = 0.25
RECONNECT_MAX_S = 5.0

# Round robin over every resolved address; gRPC's default (pick_first) would send everything to
# the first replica.
LOAD_BALANCING: list[dict[str, object]] = [{"round_robin": {}}]

# For live frame subscriptions. gRPC grows a stream's flow-control window to megabytes (BDP
# probing), and a slow reader then receives seconds-old frames from that buffer before the
# service's newest-wins queue can help. A fixed 64 KiB window keeps at most a couple of frames in
# flight, so a slow subscriber skips ahead (and sees its drop count) instead of falling behind.
LIVE_WINDOW_OPTIONS: list[ChannelOption] = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 64 * 1024),
]


def channel_options(
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    keepalive_time_s: float = KEEPALIVE_TIME_S,
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    reconnect_initial_s: float = RECONNECT_INITIAL_S,
    reconnect_max_s: float = RECONNECT_MAX_S,
    live: bool = False,
) -> list[ChannelOption]:
    """The options of one channel; ``live`` for a channel that carries frame subscriptions."""
    options: list[ChannelOption] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", round(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", round(keepalive_timeout_s * 1000)),
        # gRPC 1.85 times keepalive (and BDP) pings with this one, 60 s unless set.
        ("grpc.http2.ping_timeout_ms", round(keepalive_timeout_s * 1000)),
        # Long streams (subscriptions, incidents, job events) may carry no data for minutes;
        # without this gRPC stops pinging after two pings with no data sent, and a frozen
        # service goes unnoticed.
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", round(reconnect_initial_s * 1000)),
        ("grpc.max_reconnect_backoff_ms", round(reconnect_max_s * 1000)),
    ]
    if live:
        options += LIVE_WINDOW_OPTIONS
    return options


# For code that opens a raw subscription channel (tests, the load generator): a ping after 10 s
# of silence, 10 s for its answer.
LIVE_CHANNEL_OPTIONS: list[ChannelOption] = channel_options(
    keepalive_time_s=10.0, keepalive_timeout_s=10.0, live=True
)
