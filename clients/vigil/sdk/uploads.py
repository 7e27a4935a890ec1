"""The request stream of an upload: a header, then the file in 1 MiB chunks."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vigil.analyzer.v1 import analyzer_service_pb2 as pb
from vigil.core.errors import InvalidInput
from vigil.core.upload_protocol import CHUNK_BYTES
from vigil.sdk.analyzer_types import AnalysisOptions

# Called with (bytes handed to gRPC so far, total bytes); first with 0, last with the total.
Progress = Callable[[int, int], None]
UploadInput = str | os.PathLike[str] | BinaryIO


@dataclass
class OpenUpload:
    file: BinaryIO
    name: str
    size: int
    # Whether the SDK opened the file (and so closes it).
    owned: bool

    def close(self) -> None:
        if self.owned:
            self.file.close()


def open_upload(source: UploadInput, name: str | None, size: int | None) -> OpenUpload:
    """The file, the name shown to people and the size the header declares."""
    if isinstance(source, str | os.PathLike):
        path = pathlib.Path(source)
        try:
            file = path.open("rb")
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
        total = path.stat().st_size if size is None else size
        return OpenUpload(file, name or path.name, total, owned=True)
    if size is None:
        if not source.seekable():
            raise InvalidInput("size is required when the file cannot seek")
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
    default_name = pathlib.Path(str(getattr(source, "name", "video"))).name
    return OpenUpload(source, name or default_name, size, owned=False)


def upload_header(
    name: str, size: int, start_analysis: bool, options: AnalysisOptions | None
) -> pb.UploadHeader:
    return pb.UploadHeader(
        name=name,
        size=size,
        start_analysis=start_analysis,
        options=(options or AnalysisOptions()).to_proto(),
    )


def header(
    upload: OpenUpload, start_analysis: bool, options: AnalysisOptions | None
) -> pb.UploadVideoRequest:
    return pb.UploadVideoRequest(
        header=upload_header(upload.name, upload.size, start_analysis, options)
    )


def requests(
    upload: OpenUpload, first: pb.UploadVideoRequest, progress: Progress | None
) -> Iterator[pb.UploadVideoRequest]:
    yield first
    sent = 0
    if progress:
        progress(0, upload.size)
    while chunk := upload.file.read(CHUNK_BYTES):
        yield pb.UploadVideoRequest(chunk=chunk)
        sent += len(chunk)
        if progress:
            progress(sent, upload.size)


async def async_chunks(upload: OpenUpload, progress: Progress | None) -> AsyncIterator[bytes]:
    """The file's chunks for ``vigil.core.upload_protocol.send``, which sends the header itself."""
    sent = 0
    if progress:
        progress(0, upload.size)
    # Reads go to a thread: a slow disk or a pipe must not stall the event loop.
    while chunk := await asyncio.to_thread(upload.file.read, CHUNK_BYTES):
        yield chunk
        sent += len(chunk)
        if progress:
            progress(sent, upload.size)
