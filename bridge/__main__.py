"""``python -m bridge``: serve the bridge with uvicorn on uvloop, settings from the environment."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from vigil.core.serving import configure_logging

log = logging.getLogger("bridge")


def _drained(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main() -> None:
    # uvicorn drains on SIGTERM, then raises the signal again on its way out; with this handler
    # in place by then, a drained shutdown exits 0 as the gRPC services do (and SIGTERM before
    # uvicorn starts exits 0 at once).
    signal.signal(signal.SIGTERM, _drained)
    settings = BridgeSettings()
    configure_logging(settings.log_level)
    sock = listen(settings)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("open http://%s:%d/ in a browser", shown, port)
    uvicorn.Server(config(create_app(settings), settings)).run(sockets=[sock])


if __name__ == "__main__":
    main()
