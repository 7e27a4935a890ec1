"""What a source may declare about watch rules, and the sources file's form of them.

Validation refuses a rule that could never work, naming the rule and the field: an id that is not
unique, a condition too long for the model's prompt, a zone the source does not have (or a line,
which holds no one), a class the detector never reports, an interval or budget out of bounds, a
daily window that is not "HH:MM" to "HH:MM", a time zone that is not an IANA name.
"""

from __future__ import annotations

import datetime
import math
import re
import zoneinfo
from collections.abc import Collection
from typing import Any

from google.protobuf import json_format

from detector_service.watch_rule_logic import minute_of_day
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb

MAX_RULES = 32
MAX_CONDITION = 300
ID_RULE = re.compile(r"[A-Za-z0-9_-]{1,64}")
KIND_RULE = re.compile(r"[A-Za-z0-9_ -]{1,64}")
# Bounds of a rule's own settings (0 means the service default for interval and budget).
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 86400.0
MAX_BUDGET_PER_HOUR = 3600
MAX_DWELL_S = 86400.0


def time_zone(name: str) -> datetime.tzinfo | None:
    """The source's time zone: the IANA zone ``name``, or None (the service's local time, its
    daylight saving included) when empty."""
    return zoneinfo.ZoneInfo(name) if name else None


def validate_time_zone(name: str) -> None:
    if not name:
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"time_zone {name!r} is not an IANA time zone (for example Europe/Berlin)",
            field="time_zone",
        ) from None


def validate_watch_rules(spec: pb.SourceSpec, known_classes: Collection[str] = ()) -> None:
    """Refuse rules that cannot work; ``known_classes``: what the detector can report (empty
    when that cannot be told, as with a hosted model)."""
    validate_time_zone(spec.time_zone)
    if len(spec.watch_rules) > MAX_RULES:
        raise InvalidInput(f"at most {MAX_RULES} watch rules per source", field="watch_rules")
    areas = {z.name for z in spec.zones if z.kind == pb.ZONE_KIND_AREA}
    ids: set[str] = set()
    for n, rule in enumerate(spec.watch_rules):
        where = f"watch rule {rule.id!r}" if rule.id else f"watch rule #{n + 1}"
        field = f"watch_rules[{n}]"
        if not ID_RULE.fullmatch(rule.id):
            raise InvalidInput(
                f"{where}: an id of 1 to 64 letters, digits, '-' or '_' is required",
                field=f"{field}.id",
            )
        if rule.id in ids:
            raise InvalidInput(f"{where}: rule ids must be unique within a source", field=field)
        ids.add(rule.id)
        _validate_rule(rule, where, field, areas, known_classes)


def _validate_rule(
    rule: pb.WatchRule, where: str, field: str, areas: set[str], known: Collection[str]
) -> None:
    condition = rule.condition.strip()
    if not 1 <= len(condition) <= MAX_CONDITION:
        raise InvalidInput(
            f"{where}: the condition must be 1 to {MAX_CONDITION} characters, for example "
            "'someone climbs the fence'",
            field=f"{field}.condition",
        )
    for name in rule.filter.zones:
        if name not in areas:
            raise InvalidInput(
                f"{where}: filter.zones names {name!r}, which is not an area among the source's "
                "zones",
                field=f"{field}.filter.zones",
            )
    for name in rule.filter.classes:
        if not name or (known and name not in known):
            raise InvalidInput(
                f"{where}: filter.classes names {name!r}, which the detector never reports"
                + (f" (it reports {', '.join(sorted(known))})" if known else ""),
                field=f"{field}.filter.classes",
            )
    dwell = rule.filter.min_dwell_s
    if not (math.isfinite(dwell) and 0 <= dwell <= MAX_DWELL_S):
        raise InvalidInput(
            f"{where}: filter.min_dwell_s must be 0 to {MAX_DWELL_S:g} seconds",
            field=f"{field}.filter.min_dwell_s",
        )
    interval = rule.check_interval_s
    if not (
        interval == 0 or (math.isfinite(interval) and MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S)
    ):
        raise InvalidInput(
            f"{where}: check_interval_s must be 0 (the default, 10) or {MIN_INTERVAL_S:g} to "
            f"{MAX_INTERVAL_S:g} seconds",
            field=f"{field}.check_interval_s",
        )
    if rule.budget_per_hour > MAX_BUDGET_PER_HOUR:
        raise InvalidInput(
            f"{where}: budget_per_hour must be 0 (the default, 60) to {MAX_BUDGET_PER_HOUR} model "
            "calls",
            field=f"{field}.budget_per_hour",
        )
    if rule.incident_kind and not KIND_RULE.fullmatch(rule.incident_kind):
        raise InvalidInput(
            f"{where}: incident_kind must be 1 to 64 letters, digits, spaces, '-' or '_' (or "
            "empty: the rule's id)",
            field=f"{field}.incident_kind",
        )
    if rule.HasField("active"):
        start, end = minute_of_day(rule.active.start), minute_of_day(rule.active.end)
        if start is None or end is None:
            raise InvalidInput(
                f'{where}: active needs start and end as "HH:MM" (00:00 to 23:59), got '
                f"{rule.active.start!r} to {rule.active.end!r}",
                field=f"{field}.active",
            )
        if start == end:
            raise InvalidInput(
                f"{where}: active's start and end must differ (leave active unset for always)",
                field=f"{field}.active",
            )


def watch_rules_from_tables(tables: Any, where: str) -> list[pb.WatchRule]:
    """Rules from a sources file's ``[[sources.watch_rules]]`` tables, the contract's fields
    (checked by ``validate_watch_rules`` with the rest of the spec)::

        [[sources.watch_rules]]
        id = "fence"
        condition = "someone climbs the fence"
        filter = { classes = ["person"], zones = ["fence"], min_dwell_s = 2, motion = true }
        check_interval_s = 10        # optional: least seconds between checks (default 10)
        budget_per_hour = 60         # optional: most model calls an hour (default 60)
        incident_kind = "intrusion"  # optional: the incident's class (default: the id)
        active = { start = "22:00", end = "06:00" }   # optional, the camera's time zone
    """
    if not isinstance(tables, list):
        raise InvalidInput(f"{where}: watch_rules must be a list of tables")
    rules = []
    for table in tables:
        if not isinstance(table, dict):
            raise InvalidInput(f"{where}: a watch rule is a table")
        try:
            rules.append(json_format.ParseDict(table, pb.WatchRule()))
        except json_format.ParseError as exc:
            raise InvalidInput(f"{where}: watch rule {table.get('id', '')!r}: {exc}") from None
    return rules
