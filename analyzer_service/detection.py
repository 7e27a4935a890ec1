"""The coarse detection pass: sampled frames go to the detector service over its Detect stream.

Runs in the service process on JPEG files the media workers wrote (nothing is decoded here).
The detector is a helper, not a dependency: when it cannot be reached the caller goes on without
detections and says so.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Sequence

import grpc
from pydantic import SecretStr

from vigil.common.v1 import common_pb2
from vigil.core.serving import bearer_metadata
from vigil.detector.v1 import detector_service_pb2 as dpb
from vigil.detector.v1 import detector_service_pb2_grpc as dpb_grpc

SOURCE_PREFIX = "analyzer-job-"


class DetectorUnavailable(Exception):
    """The detector could not be reached or stopped answering; the message says why, for people."""


class DetectorClient:
    """One channel to the detector service for the analyzer's whole life."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout_s: float,
        call_timeout_s: float,
        token: SecretStr | str | None = None,
    ) -> None:
        self.address = address
        # ``authorization`` metadata for a detector that enforces a token; empty otherwise.
        self._metadata = bearer_metadata(token)
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                # A detector started after the analyzer is found within seconds, not minutes.
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 5000),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ],
        )
        self._stub = dpb_grpc.DetectorServiceStub(self._channel)

    async def _connected(self) -> None:
        """Return once the channel is ready; raise DetectorUnavailable when it fails or stalls.

        A refused connection fails at once; an address that swallows packets costs
        ``connect_timeout_s``, never the whole call deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout_s
        state = self._channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                raise DetectorUnavailable(f"the detector at {self.address} refused the connection")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DetectorUnavailable(
                    f"no connection to the detector at {self.address} within "
                    f"{self.connect_timeout_s:g} s"
                )
            try:
                await asyncio.wait_for(self._channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                continue
            state = self._channel.get_state(try_to_connect=True)

    async def detect(
        self, paths: Sequence[pathlib.Path], *, source_id: str
    ) -> list[list[common_pb2.Detection] | None]:
        """Detections of each JPEG file, in order; None for a frame the detector refused."""
        if not paths:
            return []
        await self._connected()

        async def requests() -> AsyncIterator[dpb.DetectRequest]:
            for sequence, path in enumerate(paths):
                jpeg = await asyncio.to_thread(path.read_bytes)
                yield dpb.DetectRequest(source_id=source_id, sequence=sequence, jpeg=jpeg)

        results: list[list[common_pb2.Detection] | None] = []
        call = self._stub.Detect(
            requests(), timeout=self.call_timeout_s, metadata=self._metadata or None
        )
        try:
            async for response in call:
                if response.HasField("error"):
                    results.append(None)
                else:
                    results.append(list(response.detections))
        except grpc.aio.AioRpcError as exc:
            raise DetectorUnavailable(
                f"the detector at {self.address} failed ({exc.code().name}: {exc.details()})"
            ) from exc
        finally:
            call.cancel()
        if len(results) != len(paths):
            raise DetectorUnavailable(
                f"the detector at {self.address} answered {len(results)} of {len(paths)} frames"
            )
        return results

    async def close(self) -> None:
        await self._channel.close(None)
