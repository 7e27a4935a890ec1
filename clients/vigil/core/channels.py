"""gRPC channel options for Vigil's clients."""

from __future__ import annotations

# For live frame subscriptions. gRPC grows a stream's flow-control window to megabytes (BDP
# probing), and a slow reader then receives seconds-old frames from that buffer before the
# service's newest-wins queue can help. A fixed 64 KiB window keeps at most a couple of frames in
# flight, so a slow subscriber skips ahead (and sees its drop count) instead of falling behind.
LIVE_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 64 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # A ping after 10 s of silence, 10 s for its answer: a vanished service is noticed in ~20 s.
    # gRPC 1.85 times pings with ping_timeout_ms (60 s unless set), and without
    # max_pings_without_data=0 it stops pinging on a stream that sends nothing.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]
