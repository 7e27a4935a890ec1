"""The gRPC face of the detector service: requests in, domain calls, errors mapped once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator

import grpc

from detector_service.annotate import InvalidImage, decode_image, draw, encode_jpeg
from detector_service.batcher import InferenceBatcher, Overloaded
from detector_service.events import EventLog, merged
from detector_service.evidence_key import EvidenceKey
from detector_service.evidence_rpcs import EvidenceRpcs
from detector_service.incidents.tracker import IncidentTracker
from detector_service.recorder import Recorder
from detector_service.recording.exports import ExportCache
from detector_service.recording_rpcs import RecordingRpcs
from detector_service.reviews import ReviewRpcs
from detector_service.settings import DetectorSettings
from detector_service.sources import SourceRegistry
from detector_service.tracking import StreamTrackers
from vigil.common.v1 import common_pb2
from vigil.core.errors import InvalidInput, VigilError, abort_with
from vigil.core.queues import QueueClosed
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.detector.v1 import detector_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# Frames of one Detect stream in flight at once: decode of the next overlaps inference of this one.
DETECT_PIPELINE_DEPTH = 4

Context = grpc.aio.ServicerContext[object, object]


class DetectorServicer(RecordingRpcs, EvidenceRpcs, ReviewRpcs, pb_grpc.DetectorServiceServicer):
    def __init__(
        self,
        settings: DetectorSettings,
        registry: SourceRegistry,
        batcher: InferenceBatcher,
        pool: concurrent.futures.ThreadPoolExecutor,
        incidents: IncidentTracker,
        recorder: Recorder,
        exports: ExportCache,
        events: EventLog,
        evidence_key: EvidenceKey,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.exports = exports
        self.incidents = incidents
        self.events = events
        self.evidence_key = evidence_key
        self.registry = registry
        self.batcher = batcher
        self.pool = pool

    def _detect_one(self, request: pb.DetectRequest) -> pb.DetectResponse:
        response = pb.DetectResponse(
            source_id=request.source_id,
            sequence=request.sequence,
            capture_time=request.capture_time,
        )
        try:
            image = decode_image(request.jpeg)
            response.width, response.height = image.shape[1], image.shape[0]
            found, inference_ms = self.batcher.detect(image)
            found = found.filter(
                allow=self.settings.class_allow, thresholds=self.settings.class_thresholds
            )
        except InvalidImage as exc:
            response.error.CopyFrom(common_pb2.Error(code="INVALID_IMAGE", message=str(exc)))
            return response
        except Overloaded as exc:
            response.error.CopyFrom(
                common_pb2.Error(code="OVERLOADED", message=str(exc), retryable=True)
            )
            return response
        except Exception as exc:
            log.warning("detection failed: %s", exc)
            response.error.CopyFrom(
                common_pb2.Error(code="DETECTION_FAILED", message=str(exc), retryable=True)
            )
            return response
        weapons = self.settings.weapon_classes
        response.detections.extend(found.to_proto(weapons))
        response.inference_ms = inference_ms
        if request.annotate:
            response.annotated_jpeg = encode_jpeg(
                draw(image, found, weapons), self.settings.jpeg_quality
            )
        return response

    async def Detect(
        self, request_iterator: AsyncIterator[pb.DetectRequest], context: Context
    ) -> AsyncIterator[pb.DetectResponse]:
        loop = asyncio.get_running_loop()
        # Each frame's detection, and whether its request asked for track ids.
        pending: asyncio.Queue[tuple[asyncio.Future[pb.DetectResponse], bool] | None] = (
            asyncio.Queue(DETECT_PIPELINE_DEPTH)
        )
        # Tracking runs in the consumer below, where responses come back in their requests' order.
        tracks = StreamTrackers(self.settings.track_lost_s)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    future = loop.run_in_executor(self.pool, self._detect_one, request)
                    await pending.put((future, request.track))
            finally:
                await pending.put(None)

        self.batcher.add_producer()
        reader = asyncio.create_task(read())
        try:
            while (item := await pending.get()) is not None:
                response = await item[0]
                if item[1]:
                    try:
                        # Off the loop, like detection: matching boxes to tracks is CPU work.
                        await loop.run_in_executor(self.pool, tracks.apply, response)
                    except ValueError as exc:
                        await abort_with(context, InvalidInput(str(exc), field="source_id"))
                yield response
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            self.batcher.remove_producer()

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.SubscribeResponse]:
        try:
            source = self.registry.get(request.source_id or self.settings.default_source_id)
        except VigilError as exc:
            await abort_with(context, exc)
        subscriber = source.subscribe(omit_jpeg=request.omit_jpeg, main_stream=request.main_stream)
        try:
            while True:
                yield await subscriber.next()
        except QueueClosed:
            return  # the source was removed
        finally:
            source.unsubscribe(subscriber)

    async def AddSource(
        self, request: pb.AddSourceRequest, context: Context
    ) -> pb.AddSourceResponse:
        try:
            source = await self.registry.keep(request.source)
        except VigilError as exc:
            await abort_with(context, exc)
        return pb.AddSourceResponse(source=source.snapshot())

    async def RemoveSource(
        self, request: pb.RemoveSourceRequest, context: Context
    ) -> pb.RemoveSourceResponse:
        try:
            source = await self.registry.remove(request.source_id)
        except VigilError as exc:
            await abort_with(context, exc)
        return pb.RemoveSourceResponse(source=source.snapshot())

    async def GetSource(
        self, request: pb.GetSourceRequest, context: Context
    ) -> pb.GetSourceResponse:
        try:
            source = self.registry.get(request.source_id)
        except VigilError as exc:
            await abort_with(context, exc)
        return pb.GetSourceResponse(source=source.snapshot())

    async def StreamIncidents(
        self, request: pb.StreamIncidentsRequest, context: Context
    ) -> AsyncIterator[pb.StreamIncidentsResponse]:
        subscription = self.incidents.subscribe(
            request.source_id, include_snapshot=request.include_snapshot
        )
        events = None
        if request.include_events:
            events = self.events.subscribe(
                request.source_id, include_snapshot=request.include_snapshot
            )
        try:
            async for event in merged(subscription, *(events,) if events else ()):
                yield event
        finally:
            subscription.close()
            if events is not None:
                events.close()

    async def ListIncidents(
        self, request: pb.ListIncidentsRequest, context: Context
    ) -> pb.ListIncidentsResponse:
        try:
            return await self.incidents.list(
                request.source_id, request.page_size, request.page_token, request.include_snapshot
            )
        except ValueError as exc:
            await abort_with(context, InvalidInput(str(exc)))

    async def ListSources(
        self, request: pb.ListSourcesRequest, context: Context
    ) -> pb.ListSourcesResponse:
        return pb.ListSourcesResponse(sources=[s.snapshot() for s in self.registry.all()])

    async def UpdateSource(
        self, request: pb.UpdateSourceRequest, context: Context
    ) -> pb.UpdateSourceResponse:
        try:
            source = await self.registry.update(request.source)
        except VigilError as exc:
            await abort_with(context, exc)
        return pb.UpdateSourceResponse(source=source.snapshot())

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        try:
            return await self.events.list(request)
        except ValueError as exc:
            await abort_with(context, InvalidInput(str(exc), field="page_token"))
