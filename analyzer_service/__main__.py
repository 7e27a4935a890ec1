"""``python -m analyzer_service``: serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import sys

from analyzer_service.server import serve
from analyzer_service.settings import AnalyzerSettings
from analyzer_service.store import StoreUnavailable
from vigil.core.serving import configure_logging, run_forever

log = logging.getLogger("analyzer_service")


async def main(stop: asyncio.Event) -> None:
    settings = AnalyzerSettings()
    configure_logging(settings.log_level)
    server = await serve(settings)
    log.info(
        "analyzer listening on %s:%d (data in %s)", settings.host, server.port, settings.data_dir
    )
    await stop.wait()
    log.info("stopping; calls in flight get %.1f s", settings.grace_s)
    await server.stop(settings.grace_s)


# The guard matters: media workers are spawned and re-import the main module.
if __name__ == "__main__":
    try:
        run_forever(main)
    except StoreUnavailable as exc:
        # A database to start or a URL to fix: one line saying which, not a traceback. The
        # message names host and port, never the password.
        sys.exit(f"analyzer service cannot start: {exc}")
