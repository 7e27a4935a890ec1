"""The set of sources a detector service owns: validation, modes, add, remove, look-up.

Sources come from two places. Configuration (the built-in test pattern, the sources file) is read
at every start and never stored. Sources added at run time (``AddSource``) are kept in the
``SourceStore`` and registered again after a restart; removing one forgets it. When a kept source
has the id of a configured one, configuration wins: the kept one is skipped, with a warning, and
stays in the store until it is removed.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import tomllib
from collections.abc import Collection
from typing import Any

from detector_service import alerts
from detector_service.batcher import InferenceBatcher
from detector_service.gating import motion_from_table, validate_motion
from detector_service.health_monitor import HealthMonitor
from detector_service.pipeline import LiveSource
from detector_service.private import require_private
from detector_service.recorder import Recorder
from detector_service.settings import DetectorSettings
from detector_service.source_stores import SourceKeeping
from detector_service.source_uri import credentials_parse
from detector_service.subscribers import FrameObserver
from detector_service.watch_rule_spec import validate_watch_rules, watch_rules_from_tables
from detector_service.watch_rules import WatchRules
from detector_service.zones import Zones, validate_zones, zones_from_tables
from vigil.core import source_ids
from vigil.core.errors import AlreadyExists, InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
# Cameras watch all the time; files and the test pattern are played for whoever watches.
DEFAULT_MODES: dict[pb.SourceKind.ValueType, pb.SourceMode.ValueType] = {
    pb.SOURCE_KIND_WEBCAM: pb.SOURCE_MODE_ALWAYS,
    pb.SOURCE_KIND_STREAM: pb.SOURCE_MODE_ALWAYS,
    pb.SOURCE_KIND_FILE: pb.SOURCE_MODE_ON_DEMAND,
    pb.SOURCE_KIND_TEST_PATTERN: pb.SOURCE_MODE_ON_DEMAND,
}


def mode_of(spec: pb.SourceSpec) -> pb.SourceMode.ValueType:
    """The mode in effect: the declared one, else the kind's default."""
    if spec.mode != pb.SOURCE_MODE_UNSPECIFIED:
        return spec.mode
    return DEFAULT_MODES.get(spec.kind, pb.SOURCE_MODE_ON_DEMAND)


def validate(spec: pb.SourceSpec, known_classes: Collection[str] = ()) -> None:
    """Refuse a spec that cannot work; ``known_classes``: the classes the detector reports (empty
    when that cannot be told), which watch rules may name."""
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
    if spec.record_uri:
        _validate_record_uri(spec)
    if spec.mode not in pb.SourceMode.values():
        raise InvalidInput("mode must be on_demand or always (or unset for the kind's default)")
    if spec.kind == pb.SOURCE_KIND_FILE and not spec.uri:
        raise InvalidInput("a file source needs the file's path as uri")
    if spec.max_fps < 0 or spec.max_fps > 120:
        raise InvalidInput("max_fps must be between 0 (default) and 120")
    if spec.width > 7680 or spec.height > 4320:
        raise InvalidInput("width and height must be at most 7680×4320")
    if spec.alert_policy not in pb.AlertPolicy.values():
        raise InvalidInput("alert_policy must be at_opening, when_confirmed or both (or unset)")
    validate_motion(spec.motion)
    validate_zones(spec)
    validate_watch_rules(spec, known_classes)


def _validate_record_uri(spec: pb.SourceSpec) -> None:
    if spec.kind != pb.SOURCE_KIND_STREAM:
        raise InvalidInput("record_uri is for streams only: a camera's main stream")
    if not spec.record_uri.lower().startswith(STREAM_SCHEMES):
        raise InvalidInput("record_uri must start with rtsp://, rtsps://, http:// or https://")
    if not credentials_parse(spec.record_uri):
        raise InvalidInput(
            "the record_uri's user:password part could not be read: percent-encode '/', '?', "
            "'#' and '@' in a password (for example '#' as %23)"
        )


KINDS = {
    "webcam": pb.SOURCE_KIND_WEBCAM,
    "stream": pb.SOURCE_KIND_STREAM,
    "file": pb.SOURCE_KIND_FILE,
    "test_pattern": pb.SOURCE_KIND_TEST_PATTERN,
}
MODES = {"on_demand": pb.SOURCE_MODE_ON_DEMAND, "always": pb.SOURCE_MODE_ALWAYS}
# Fields the capture opens its input with: changing one restarts the capture.
STREAM_FIELDS = ("uri", "record_uri", "width", "height", "max_fps", "loop")
SPEC_FIELDS = {
    "id", "kind", "uri", "loop", "max_fps", "width", "height", "display_name", "mode", "record_uri",
    "zones", "incident_zones", "ptz", "motion", "alert_policy", "watch_rules", "time_zone",
}  # fmt: skip


def load_sources_file(path: pathlib.Path) -> list[pb.SourceSpec]:
    """Read ``[[sources]]`` tables from a TOML file; every entry is validated before any is used.

    [[sources]]
    id = "lobby"
    kind = "stream"           # webcam | stream | file | test_pattern
    uri = "rtsp://camera.local/stream2"
    record_uri = "rtsp://camera.local/stream1"   # optional: the main stream (streams only)
    mode = "always"           # always | on_demand; default: always for cameras, else on_demand
    incident_zones = ["door"] # optional: weapons alert only inside these areas
    alert_policy = "both"     # at_opening | when_confirmed | both; default: the service's
    [[sources.zones]]         # optional, repeated: see zones.zones_from_tables
    name = "door"
    kind = "area"
    points = [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]]
    ptz = false               # true: it pans, tilts or zooms on purpose (never "moved")
    [sources.motion]          # optional: see gating.motion_from_table
    sensitivity = 0.6
    masks = [[[0.8, 0.0], [1.0, 0.0], [1.0, 0.1], [0.8, 0.1]]]
    time_zone = "Europe/Berlin"   # optional: the camera's, for watch-rule times
    [[sources.watch_rules]]   # optional, repeated: see watch_rule_spec.watch_rules_from_tables
    id = "fence"
    condition = "someone climbs the fence"

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
    mode = values.pop("mode", None)
    if mode is not None and mode not in MODES:
        raise InvalidInput(f"{where}: mode must be one of {sorted(MODES)}")
    policy = values.pop("alert_policy", None)
    if policy is not None:
        if policy not in alerts.POLICY_OF_NAME:
            raise InvalidInput(
                f"{where}: alert_policy must be one of {sorted(alerts.POLICY_OF_NAME)}"
            )
        values["alert_policy"] = alerts.POLICY_OF_NAME[policy]
    values["zones"] = zones_from_tables(values.get("zones", []), where)
    if "motion" in values:
        values["motion"] = motion_from_table(values["motion"], where)
    values["watch_rules"] = watch_rules_from_tables(values.get("watch_rules", []), where)
    try:
        return pb.SourceSpec(
            kind=KINDS[kind], mode=MODES[mode] if mode else pb.SOURCE_MODE_UNSPECIFIED, **values
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def known_classes(settings: DetectorSettings, batcher: InferenceBatcher) -> frozenset[str]:
    """The classes the detector can report: the model's (when it names them), less those
    ``class_allow`` leaves out; empty when that cannot be told (a hosted model, no allow list)."""
    names = frozenset(batcher.backend.names)
    if settings.class_allow is None:
        return names
    allowed = frozenset(settings.class_allow)
    return names & allowed if names else allowed


class SourceRegistry:
    def __init__(
        self,
        settings: DetectorSettings,
        batcher: InferenceBatcher,
        store: SourceKeeping,
        observer: FrameObserver | None = None,
        recorder: Recorder | None = None,
        zones: Zones | None = None,
        health: HealthMonitor | None = None,
        rules: WatchRules | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.known_classes = known_classes(settings, batcher)
        self.health = health
        self.batcher = batcher
        self.store = store
        self.observer = observer
        self.recorder = recorder
        self.zones = zones
        self._sources: dict[str, LiveSource] = {}
        # Each source's spec as declared (real URIs), and the configured ones as configured.
        self._declared: dict[str, pb.SourceSpec] = {}
        self._configured: dict[str, pb.SourceSpec] = {}

    def add(self, spec: pb.SourceSpec) -> LiveSource:
        """Register a source for this run only (configuration); an always-on one starts now."""
        source = self._register(spec)
        self._configured[spec.id] = spec
        if source.always:
            self._record(spec)
            source.start()
        return source

    async def keep(self, spec: pb.SourceSpec) -> LiveSource:
        """Register a source added at run time and store it, so it comes back after a restart."""
        source = self._register(spec)
        try:
            # As declared (an unset mode stays the kind's default), real URIs included; refused
            # when another replica added the same id first.
            await self.store.add(spec)
        except BaseException:
            # Not kept, so not registered either: it would vanish at the next restart.
            if self._sources.get(spec.id) is source:
                del self._sources[spec.id]
            source.close()
            raise
        # Started once kept, unless removed meanwhile; the caller's answer then says "starting".
        if source.always and self._sources.get(spec.id) is source:
            self._record(spec)
            source.start()
        return source

    def _record(self, spec: pb.SourceSpec) -> None:
        # Before the capture starts: its first connection is recorded too.
        if self.recorder is not None:
            resolved = pb.SourceSpec()
            resolved.CopyFrom(spec)
            resolved.mode = mode_of(spec)
            self.recorder.attach(resolved)

    def _register(self, spec: pb.SourceSpec) -> LiveSource:
        validate(spec, self.known_classes)
        if spec.id in self._sources:
            raise AlreadyExists(f"source {spec.id!r} already exists")
        resolved = pb.SourceSpec()
        resolved.CopyFrom(spec)
        resolved.mode = mode_of(spec)
        loop = asyncio.get_running_loop()
        recorder = self.recorder
        zones = self.zones.watch(resolved) if self.zones is not None else None
        watch = self.health.watch(resolved) if self.health is not None else None
        rules = self.rules.watch(resolved) if self.rules is not None else None
        source = LiveSource(
            resolved,
            self.settings,
            self.batcher,
            loop,
            reader_factory=recorder.open_reader if recorder is not None else None,
            observer=self.observer,
            zones=zones,
            health=watch,
            recording=recorder.is_recording if recorder is not None else None,
            detected=recorder.detected if recorder is not None else None,
            rules=rules,
        )
        self._sources[spec.id] = source
        self._declared[spec.id] = spec
        return source

    def restore(self, kept: list[pb.SourceSpec]) -> None:
        """Register the kept sources (at start, after the configured ones, which win)."""
        for spec in kept:
            if spec.id in self._sources:
                log.warning(
                    "kept source %r is shadowed by a configured source of the same id: the "
                    "configured one is used (remove it from the configuration to get the kept "
                    "one back)",
                    spec.id,
                )
                continue
            try:
                source = self._register(spec)
                if source.always:
                    self._record(spec)
                    source.start()
            except InvalidInput as exc:
                # Rules may have tightened since it was added: skipped, not fatal, and kept.
                log.warning("kept source %r is skipped: %s", spec.id, exc)

    async def update(self, spec: pb.SourceSpec) -> LiveSource:
        """Replace a source's spec, keep it across restarts and apply it now (UpdateSource).

        URIs are handed out masked: one sent back as it was handed out keeps the real one, so a
        client may read a source, change its zones and send it back. A configured source's
        update is kept as an override of its configuration: it comes back after a restart for as
        long as the configuration of that source stays as it was when the update was made (an
        operator who edits the source in the sources file has the last word).
        """
        source = self.get(spec.id)
        declared = self._declared[spec.id]
        if spec.kind != declared.kind:
            raise InvalidInput(
                "a source's kind cannot change: remove the source and add it again",
                field="source.kind",
            )
        new = pb.SourceSpec()
        new.CopyFrom(spec)
        if new.uri == source.spec.uri:
            new.uri = declared.uri
        if new.record_uri and new.record_uri == source.spec.record_uri:
            new.record_uri = declared.record_uri
        validate(new, self.known_classes)
        configured = self._configured.get(spec.id)
        if configured is None:
            await self.store.put(new)
        else:
            await self.store.put_override(configured, new)
        if self._sources.get(spec.id) is source:  # not removed meanwhile
            self._apply(source, new)
        return source

    def _apply(self, source: LiveSource, spec: pb.SourceSpec) -> None:
        declared, self._declared[spec.id] = self._declared[spec.id], spec
        restart = any(getattr(spec, f) != getattr(declared, f) for f in STREAM_FIELDS)
        resolved = pb.SourceSpec()
        resolved.CopyFrom(spec)
        resolved.mode = mode_of(spec)
        if self.recorder is not None and (restart or resolved.mode != source.spec.mode):
            # A new stream or mode: the recording follows, set up before the capture restarts.
            self.recorder.detach(spec.id)
            if resolved.mode == pb.SOURCE_MODE_ALWAYS:
                self.recorder.attach(resolved)
        source.respec(resolved, restart)

    async def apply_overrides(self, overrides: list[tuple[pb.SourceSpec, pb.SourceSpec]]) -> None:
        """Apply the kept updates of configured sources (at start, after ``add``)."""
        for base, spec in overrides:
            configured = self._configured.get(spec.id)
            if configured is not None and configured == base:
                try:
                    validate(spec, self.known_classes)
                except InvalidInput as exc:
                    log.warning("the update of source %r is skipped: %s", spec.id, exc)
                    continue
                self._apply(self._sources[spec.id], spec)
                continue
            if configured is not None:
                log.warning(
                    "source %r was updated at run time, then changed in the configuration: "
                    "the configuration is used and the update forgotten",
                    spec.id,
                )
            await self.store.delete_override(spec.id)

    def get(self, source_id: str) -> LiveSource:
        try:
            return self._sources[source_id]
        except KeyError:
            raise NotFound(f"no source {source_id!r}") from None

    async def remove(self, source_id: str) -> LiveSource:
        """Stop and unregister a source, and forget it if it was kept."""
        source = self.get(source_id)
        self.release(source_id)
        await self.store.delete(source_id)
        return source

    def release(self, source_id: str) -> None:
        """Stop and unregister a source without forgetting it (another replica runs it now)."""
        source = self._sources.pop(source_id, None)
        if source is None:
            return
        self._declared.pop(source_id, None)
        self._configured.pop(source_id, None)
        if self.zones is not None:
            self.zones.forget(source_id)
        source.close()
        if self.rules is not None:
            self.rules.forget(source_id)
        if self.recorder is not None:
            self.recorder.detach(source_id)

    def all(self) -> list[LiveSource]:
        return [self._sources[k] for k in sorted(self._sources)]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()

    def join(self, timeout: float) -> None:
        for source in self._sources.values():
            source.join(timeout)
