"""How the bridge is served: uvicorn on uvloop, per-message deflate off, on a socket we bind.

Shared by ``python -m bridge`` and the tests, so the tests run the server configuration that
production runs.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from bridge.settings import BridgeSettings
from bridge.transport import with_header_timeout


def listen(settings: BridgeSettings) -> socket.socket:
    """The listening socket. Binding it here (not in uvicorn) lets us cap the kernel send buffer,
    which accepted connections inherit: a viewer on a slow link then pushes back after a frame or
    two, and the bridge's newest-wins queue drops stale frames instead of the kernel queueing
    seconds of them."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.send_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer_bytes)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


_TOKEN = re.compile(r"(token=)[^&\s\"']*")


class RedactTokens(logging.Filter):
    """Scrubs ``?token=...`` from log lines: uvicorn logs request paths with their query."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message:
            record.msg, record.args = _TOKEN.sub(r"\1[redacted]", message), None
        return True


def redact() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def config(app: FastAPI, settings: BridgeSettings, **overrides: Any) -> uvicorn.Config:
    redact()
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools (as "auto" picks) with a deadline on request headers (bridge.transport).
        "http": with_header_timeout(settings.header_timeout_s),
        "ws": settings.ws_impl,
        # Frames are JPEG: deflate cannot shrink them and costs 2-5 ms per 100 KB frame.
        "ws_per_message_deflate": False,
        # Incoming messages only (browsers send small control messages); bigger ones close 1009.
        "ws_max_size": settings.ws_max_message_bytes,
        # Peers that vanished without closing are found by unanswered pings and disconnected.
        "ws_ping_interval": settings.ws_ping_interval_s,
        "ws_ping_timeout": settings.ws_ping_timeout_s,
        # uvicorn would rewrite the client address from X-Forwarded-For of any 127.0.0.1 peer;
        # the bridge decides who the client is itself, from ``trusted_proxies`` (bridge.clients).
        "proxy_headers": False,
        # In-flight requests get this long after SIGTERM; uvicorn would wait for ever.
        "timeout_graceful_shutdown": settings.grace_s,
        "log_level": settings.log_level.lower(),
        # Keep the process's logging format; uvicorn's default config would replace it.
        "log_config": None,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
