"""Starting and stopping the detector service."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass

from detector_service import backends
from detector_service.batcher import InferenceBatcher
from detector_service.service import DetectorServicer
from detector_service.settings import DetectorSettings
from detector_service.sources import SourceRegistry
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc
from vigil.serving import Service, configure_logging, run_forever

log = logging.getLogger("detector_service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DetectorService"].full_name


@dataclass
class DetectorServer:
    service: Service
    registry: SourceRegistry
    batcher: InferenceBatcher
    pool: concurrent.futures.ThreadPoolExecutor

    @property
    def port(self) -> int:
        return self.service.port

    async def stop(self, grace: float) -> None:
        await self.service.stop(grace)
        self.registry.close()
        # Threads left running into interpreter exit can abort it from inside OpenCV.
        await asyncio.to_thread(self.registry.join, 10.0)
        await asyncio.to_thread(self.batcher.close)
        self.pool.shutdown(wait=False, cancel_futures=True)


async def serve(settings: DetectorSettings) -> DetectorServer:
    """Load the model, register the default test-pattern source and start serving."""
    backend = await asyncio.to_thread(backends.create, settings)
    batcher = InferenceBatcher(backend)
    registry = SourceRegistry(settings, batcher)
    registry.add(
        pb.SourceSpec(
            id=settings.default_source_id,
            kind=pb.SOURCE_KIND_TEST_PATTERN,
            display_name="Test pattern",
        )
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="detect")
    service = Service(service_names=[SERVICE_NAME])
    pb_grpc.add_DetectorServiceServicer_to_server(
        DetectorServicer(settings, registry, batcher, pool), service.server
    )
    await service.start(settings.host, settings.port)
    log.info(
        "detector service on %s:%d (backend %s)", settings.host, service.port, backend.model_name
    )
    return DetectorServer(service, registry, batcher, pool)


def main() -> None:
    settings = DetectorSettings()
    configure_logging(settings.log_level)

    async def run(stop: asyncio.Event) -> None:
        server = await serve(settings)
        await stop.wait()
        log.info("stopping: draining for up to %.0f s", settings.grace_s)
        await server.stop(settings.grace_s)

    run_forever(run)
