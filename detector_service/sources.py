"""The set of sources a detector service owns: validation, add, remove, look-up."""

from __future__ import annotations

import asyncio
import pathlib
import tomllib
from typing import Any

from detector_service.batcher import InferenceBatcher
from detector_service.pipeline import LiveSource
from detector_service.private import require_private
from detector_service.settings import DetectorSettings
from detector_service.source_uri import credentials_parse
from detector_service.subscribers import FrameObserver
from vigil.core import source_ids
from vigil.core.errors import AlreadyExists, InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def validate(spec: pb.SourceSpec) -> None:
    if not source_ids.is_source_id(spec.id):
        raise InvalidInput(f"source id must be {source_ids.RULE}")
    if spec.kind == pb.SOURCE_KIND_UNSPECIFIED:
        raise InvalidInput("source kind is required")
    if spec.kind == pb.SOURCE_KIND_WEBCAM and not (spec.uri or "0").isdigit():
        raise InvalidInput("a webcam's uri is its device index, for example 0")
    if spec.kind == pb.SOURCE_KIND_STREAM and not spec.uri.lower().startswith(STREAM_SCHEMES):
        raise InvalidInput("a stream's uri must start with rtsp://, rtsps://, http:// or https://")
    if spec.kind == pb.SOURCE_KIND_STREAM and not credentials_parse(spec.uri):
        # Never quote the URI here: the password in it is what could not be found to mask.
        raise InvalidInput(
            "the stream uri's user:password part could not be read: percent-encode '/', '?', "
            "'#' and '@' in a password (for example '#' as %23)"
        )
    if spec.kind == pb.SOURCE_KIND_FILE and not spec.uri:
        raise InvalidInput("a file source needs the file's path as uri")
    if spec.max_fps < 0 or spec.max_fps > 120:
        raise InvalidInput("max_fps must be between 0 (default) and 120")
    if spec.width > 7680 or spec.height > 4320:
        raise InvalidInput("width and height must be at most 7680×4320")


KINDS = {
    "webcam": pb.SOURCE_KIND_WEBCAM,
    "stream": pb.SOURCE_KIND_STREAM,
    "file": pb.SOURCE_KIND_FILE,
    "test_pattern": pb.SOURCE_KIND_TEST_PATTERN,
}
SPEC_FIELDS = {"id", "kind", "uri", "loop", "max_fps", "width", "height", "display_name"}


def load_sources_file(path: pathlib.Path) -> list[pb.SourceSpec]:
    """Read ``[[sources]]`` tables from a TOML file; every entry is validated before any is used.

    [[sources]]
    id = "lobby"
    kind = "stream"           # webcam | stream | file | test_pattern
    uri = "rtsp://camera.local/stream1"

    The file may hold camera passwords: one that group or others can read is refused.
    """
    require_private(path)
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read sources file {path}: {exc}") from None
    specs = []
    for n, entry in enumerate(document.get("sources", []), start=1):
        specs.append(_spec_from_table(entry, f"{path} source #{n}"))
    for spec in specs:
        validate(spec)
    ids = [s.id for s in specs]
    if len(ids) != len(set(ids)):
        raise InvalidInput(f"{path}: source ids must be unique")
    return specs


def _spec_from_table(entry: Any, where: str) -> pb.SourceSpec:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where}: expected a table")
    unknown = set(entry) - SPEC_FIELDS
    if unknown:
        raise InvalidInput(f"{where}: unknown keys {sorted(unknown)}")
    values = dict(entry)
    kind = values.pop("kind", "")
    if kind not in KINDS:
        raise InvalidInput(f"{where}: kind must be one of {sorted(KINDS)}")
    try:
        return pb.SourceSpec(kind=KINDS[kind], **values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: {exc}") from None


class SourceRegistry:
    def __init__(
        self,
        settings: DetectorSettings,
        batcher: InferenceBatcher,
        observer: FrameObserver | None = None,
    ) -> None:
        self.settings = settings
        self.batcher = batcher
        self.observer = observer
        self._sources: dict[str, LiveSource] = {}

    def add(self, spec: pb.SourceSpec) -> LiveSource:
        validate(spec)
        if spec.id in self._sources:
            raise AlreadyExists(f"source {spec.id!r} already exists")
        source = LiveSource(
            spec, self.settings, self.batcher, asyncio.get_running_loop(), observer=self.observer
        )
        self._sources[spec.id] = source
        return source

    def get(self, source_id: str) -> LiveSource:
        try:
            return self._sources[source_id]
        except KeyError:
            raise NotFound(f"no source {source_id!r}") from None

    def remove(self, source_id: str) -> LiveSource:
        source = self.get(source_id)
        del self._sources[source_id]
        source.close()
        return source

    def all(self) -> list[LiveSource]:
        return [self._sources[k] for k in sorted(self._sources)]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()

    def join(self, timeout: float) -> None:
        for source in self._sources.values():
            source.join(timeout)
