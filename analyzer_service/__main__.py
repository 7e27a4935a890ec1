"""``python -m analyzer_service``: serve until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging

from analyzer_service.server import serve
from analyzer_service.settings import AnalyzerSettings
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
    run_forever(main)
