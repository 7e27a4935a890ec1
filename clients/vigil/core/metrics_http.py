"""Prometheus metrics over plain HTTP on a port of their own, the same way in every process.

The detector, the analyzer and ``vigil run`` itself serve their registry this way (the bridge has
``/metrics`` on its own HTTP port). The server runs on a thread, so a scrape never waits for an
event loop and never slows one.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[int, Callable[[], None]]:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0 picks a free one).

    Returns the port it listens on and a function that stops the server and frees the port.
    """
    server, thread = start_http_server(port, host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return server.server_port, stop
