"""``vigil rules``: a source's watch rules, situations in plain language the language model
watches for, with what each has done since the detector started."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from vigil import cli_common as common
from vigil.sdk import Source, WatchRule

WINDOW = re.compile(r"(\d\d:\d\d)-(\d\d:\d\d)")


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    rules = common.add_command(
        commands,
        "rules",
        parent,
        help="list, add or remove a source's watch rules",
        description="A watch rule is a situation in plain language ('someone climbs the fence') "
        "the language model looks for on a camera. A computer-vision pre-filter (classes present, "
        "zones, dwell, motion) picks the candidate moments; only those reach the model, at most "
        "once per check interval and within the rule's hourly budget. A yes opens an incident of "
        "the rule's kind. Times are in the camera's time zone.",
    )
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", parents=[parent], help="list a source's rules and status")
    ls.add_argument("source", metavar="CAMERA", help="id of the source")
    common.handled_by(ls, rules_list, "detector")

    add = actions.add_parser("add", parents=[parent], help="add a rule (or replace one by id)")
    add.add_argument("source", metavar="CAMERA", help="id of the source")
    add.add_argument("id", metavar="ID", help="the rule's id: letters, digits, '-' and '_'")
    add.add_argument("condition", metavar="CONDITION", help="the situation in plain language")
    add.add_argument("--classes", default="", metavar="NAMES", help="comma-separated classes, "
                     "one of which must be detected (default: any, or none)")  # fmt: skip
    add.add_argument("--zones", default="", metavar="NAMES", help="comma-separated areas the "
                     "object must be in (default: anywhere)")  # fmt: skip
    add.add_argument("--dwell", type=float, default=0.0, metavar="S",
                     help="the object tracked at least S seconds")  # fmt: skip
    add.add_argument("--motion", action="store_true", help="something must move in the picture")
    add.add_argument("--interval", type=float, default=0.0, metavar="S",
                     help="least seconds between checks (default: the service's, 10)")  # fmt: skip
    add.add_argument("--budget", type=int, default=0, metavar="N",
                     help="most model calls per hour (default: the service's, 60)")  # fmt: skip
    add.add_argument("--kind", default="", metavar="K",
                     help="the kind of incident a yes opens (default: the rule's id)")  # fmt: skip
    add.add_argument("--active", default="", metavar="HH:MM-HH:MM", help="only at these times "
                     "of day, for example 22:00-06:00 (default: always)")  # fmt: skip
    add.add_argument("--disabled", action="store_true", help="keep the rule but do not check it")
    common.handled_by(add, rules_add, "detector")

    remove = actions.add_parser("remove", parents=[parent], help="remove a rule")
    remove.add_argument("source", metavar="CAMERA", help="id of the source")
    remove.add_argument("id", metavar="ID", help="the rule's id")
    common.handled_by(remove, rules_remove, "detector")


def names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def rule_of(args: argparse.Namespace) -> WatchRule:
    start = end = ""
    if args.active:
        window = WINDOW.fullmatch(args.active.strip())
        if window is None:
            raise common.UsageError(f"--active {args.active!r}: expected HH:MM-HH:MM")
        start, end = window.groups()
    return WatchRule(
        id=args.id, condition=args.condition, classes=names(args.classes),
        zones=names(args.zones), min_dwell_s=args.dwell, motion=args.motion,
        check_interval_s=args.interval, budget_per_hour=args.budget, incident_kind=args.kind,
        active_start=start, active_end=end, disabled=args.disabled,
    )  # fmt: skip


def prefilter(r: WatchRule) -> str:
    parts = [",".join(r.classes) or "any class"]
    parts += [f"in {','.join(r.zones)}"] if r.zones else []
    parts += [f"dwell {r.min_dwell_s:g} s"] if r.min_dwell_s else []
    parts += ["motion"] if r.motion else []
    return " ".join(parts)


def rules_text(source: Source) -> str:
    if not source.watch_rules:
        return f"no watch rules on {source.id}"
    status = {s.rule_id: s for s in source.watch_rule_status}
    rows = []
    for r in source.watch_rules:
        s = status.get(r.id)
        when = f"{r.active_start}-{r.active_end}" if r.active_start else "always"
        done = f"{s.checks}/{s.matches}" if s else "-"
        last = (s.last_error or s.last_reason) if s else ""
        rows.append([
            r.id, "off" if r.disabled else "on", r.condition, prefilter(r), when,
            done, last or "-",
        ])  # fmt: skip
    headers = ["ID", "STATE", "CONDITION", "PRE-FILTER", "ACTIVE", "CHECKS/YES", "LAST"]
    zone = source.time_zone or "the service's"
    return common.table(headers, rows) + f"\ntime zone: {zone}"


def rules_value(source: Source) -> dict[str, Any]:
    return {
        "time_zone": source.time_zone,
        "rules": source.watch_rules,
        "status": source.watch_rule_status,
    }


def rules_list(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        source = client.get_source(args.source)
    return common.output(args, rules_value(source), rules_text(source))


def rules_add(args: argparse.Namespace) -> int:
    rule = rule_of(args)
    with common.detector_client(args) as client:
        spec = client.get_source(args.source).spec
        # A rule of the same id is replaced in place, so the list keeps its order.
        if any(r.id == rule.id for r in spec.watch_rules):
            rules = tuple(rule if r.id == rule.id else r for r in spec.watch_rules)
        else:
            rules = (*spec.watch_rules, rule)
        source = client.update_source(dataclasses.replace(spec, watch_rules=rules))
    return common.output(args, rules_value(source), rules_text(source))


def rules_remove(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        spec = client.get_source(args.source).spec
        kept = tuple(r for r in spec.watch_rules if r.id != args.id)
        if len(kept) == len(spec.watch_rules):
            raise common.UsageError(f"{args.source} has no watch rule {args.id!r}")
        source = client.update_source(dataclasses.replace(spec, watch_rules=kept))
    return common.output(args, rules_value(source), rules_text(source))
