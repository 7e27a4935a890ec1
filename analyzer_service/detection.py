"""The coarse detection pass: sampled frames go to the detector service over its Detect stream.

Runs in the service process on JPEG files the media workers wrote (nothing is decoded here).
The detector is a helper, not a dependency: when it cannot be reached the caller goes on without
detections and says so. Calls go through the SDK's client (deadline, token, error mapping).
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Sequence

from pydantic import SecretStr

from vigil.common.v1 import common_pb2
from vigil.core.errors import Unavailable, VigilError
from vigil.core.tls import TlsClientFiles
from vigil.sdk import AsyncDetectorClient, ClientOptions, DetectFrame, ExportInfo, with_tls
from vigil.sdk.streams import AsyncStream

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
        tls: TlsClientFiles | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s
        if isinstance(token, SecretStr):
            token = token.get_secret_value()
        self._client = AsyncDetectorClient(
            with_tls(ClientOptions(address, token=token or None, timeout_s=call_timeout_s), tls)
        )

    async def detect(
        self, paths: Sequence[pathlib.Path], *, source_id: str
    ) -> list[list[common_pb2.Detection] | None]:
        """Detections of each JPEG file, in order; None for a frame the detector refused."""
        if not paths:
            return []
        # A refused connection fails at once; an address that swallows packets costs
        # ``connect_timeout_s``, never the whole call deadline.
        try:
            await self._client.connect(self.connect_timeout_s)
        except Unavailable as exc:
            raise DetectorUnavailable(exc.message) from None

        async def frames() -> AsyncIterator[DetectFrame]:
            for sequence, path in enumerate(paths):
                jpeg = await asyncio.to_thread(path.read_bytes)
                yield DetectFrame(jpeg, sequence=sequence)

        results: list[list[common_pb2.Detection] | None] = []
        stream = self._client.detect(frames(), source_id=source_id, timeout_s=self.call_timeout_s)
        try:
            async for result in stream:
                results.append(None if result.error is not None else list(result.proto.detections))
        except VigilError as exc:
            raise DetectorUnavailable(
                f"the detector at {self.address} failed ({exc.status.name}: {exc.message})"
            ) from exc
        finally:
            stream.cancel()
        if len(results) != len(paths):
            raise DetectorUnavailable(
                f"the detector at {self.address} answered {len(results)} of {len(paths)} frames"
            )
        return results

    async def export(
        self, source_id: str, start: float, end: float, *, timeout_s: float
    ) -> AsyncStream[ExportInfo | bytes]:
        """[start, end) of a source's recording: its ExportInfo, then the MP4's bytes. Raises
        Unavailable, saying where, when the detector cannot be reached."""
        try:
            await self._client.connect(self.connect_timeout_s)
        except Unavailable as exc:
            raise Unavailable(
                f"the detector service at {self.address} cannot be reached to fetch the "
                f"recording ({exc.message}); try again when it is up"
            ) from None
        return self._client.export_stream(source_id, start, end, timeout_s=timeout_s)

    async def close(self) -> None:
        await self._client.close()
