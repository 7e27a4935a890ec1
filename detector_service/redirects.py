"""Calls about a source another replica runs are answered with that replica's address.

gRPC has no redirect: a replica that does not run the source a call names ends the call with
UNAVAILABLE whose ``ErrorInfo.metadata`` holds ``owner`` (the owner's host:port) and
``source_id``; the SDK calls the owner instead (``vigil.sdk.following``). The answer also tells
gRPC's own retries not to retry here (``grpc-retry-pushback-ms`` below zero): the same replica
would answer the same. A source nobody holds right now (its replica died, the lease has not run
out yet) is UNAVAILABLE without an owner, with the usual retry delay.

``ListSources`` answers for every source of the database, each with its replica's address
(``Source.replica``); the sources run elsewhere carry their spec (URIs masked) without live state.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from detector_service.ownership import Ownership
from detector_service.source_uri import SourceUri
from detector_service.sources import mode_of
from vigil.core.errors import DETAILS_KEY, AlreadyExists, Unavailable, abort_with, rich_status
from vigil.core.serving import _behaviour, _same_shape
from vigil.detector.v1 import detector_service_pb2 as pb

OWNER_KEY = "owner"
_SERVICE = "/" + pb.DESCRIPTOR.services_by_name["DetectorService"].full_name + "/"
Context = grpc.aio.ServicerContext[Any, Any]


# The calls the replica running the source must answer.
REDIRECTED = ("Subscribe", "GetSource", "RemoveSource", "UpdateSource")


def source_of(method: str, request: Any, default_source_id: str) -> str | None:
    """The source a call is about, for the calls in ``REDIRECTED``."""
    name = method.removeprefix(_SERVICE)
    if name == "Subscribe":
        return str(request.source_id) or default_source_id
    if name in ("GetSource", "RemoveSource"):
        return str(request.source_id)
    if name == "UpdateSource":
        return str(request.source.id)
    return None


class OwnerRedirects(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, ownership: Ownership, default_source_id: str) -> None:
        self.ownership = ownership
        self.default_source_id = default_source_id

    async def _check(self, method: str, request: Any, context: Context) -> None:
        source_id = source_of(method, request, self.default_source_id)
        if source_id is None or self.ownership.runs(source_id):
            return
        owners = await self.ownership.owners()
        if source_id not in owners:
            return  # no such source: the method itself says so
        owner = owners[source_id]
        if owner is None or owner.replica == self.ownership.replica:
            await abort_with(
                context,
                Unavailable(f"source {source_id!r} is moving between replicas: try again shortly"),
            )
        error = Unavailable(
            f"source {source_id!r} is run by the replica at {owner.address}",
            metadata={OWNER_KEY: owner.address, "source_id": source_id},
        )
        status = rich_status(error)
        trailer = ((DETAILS_KEY, status.SerializeToString()), ("grpc-retry-pushback-ms", "-1"))
        await context.abort(error.status, status.message, trailer)

    async def _check_new(self, source_id: str, context: Context) -> None:
        """A source another replica runs (or will) is not added again here."""
        if self.ownership.runs(source_id):
            return  # the registry refuses it itself
        if source_id in await self.ownership.owners():
            await abort_with(context, AlreadyExists(f"source {source_id!r} already exists"))

    async def _listed(self, response: pb.ListSourcesResponse) -> pb.ListSourcesResponse:
        ownership = self.ownership
        owners = await ownership.owners()
        kept = {spec.id: spec for spec in await asyncio.to_thread(ownership.store.load)}
        listed = {source.spec.id: source for source in response.sources}
        for source in listed.values():
            source.replica = ownership.address
        for source_id in sorted(set(owners) - set(listed)):
            spec = ownership.configured.get(source_id) or kept.get(source_id)
            if spec is None:
                continue  # configured on another replica only
            elsewhere = pb.Source(spec=spec)
            elsewhere.spec.uri = SourceUri(spec.uri).masked
            elsewhere.spec.record_uri = SourceUri(spec.record_uri).masked
            elsewhere.spec.mode = mode_of(spec)
            owner = owners[source_id]
            elsewhere.replica = owner.address if owner is not None else ""
            listed[source_id] = elsewhere
        return pb.ListSourcesResponse(sources=[listed[k] for k in sorted(listed)])

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        behaviour = _behaviour(handler)
        if method.removeprefix(_SERVICE) == "ListSources":

            async def listing(request: Any, context: Context) -> Any:
                return await self._listed(await behaviour(request, context))

            return _same_shape(handler, listing)
        if method.removeprefix(_SERVICE) == "AddSource":

            async def add(request: Any, context: Context) -> Any:
                await self._check_new(request.source.id, context)
                return await behaviour(request, context)

            return _same_shape(handler, add)
        if method.removeprefix(_SERVICE) not in REDIRECTED:
            return handler
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await self._check(method, request, context)
                async for response in behaviour(request, context):
                    yield response

            return _same_shape(handler, stream)

        async def call(request: Any, context: Context) -> Any:
            await self._check(method, request, context)
            return await behaviour(request, context)

        return _same_shape(handler, call)
