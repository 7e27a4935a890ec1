"""``python -m bridge``: serve the bridge with uvicorn on uvloop, settings from the environment."""

from __future__ import annotations

import logging

import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from vigil.serving import configure_logging

log = logging.getLogger("bridge")


def main() -> None:
    settings = BridgeSettings()
    configure_logging(settings.log_level)
    sock = listen(settings)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info("open http://%s:%d/ in a browser", shown, port)
    uvicorn.Server(config(create_app(settings), settings)).run(sockets=[sock])


if __name__ == "__main__":
    main()
