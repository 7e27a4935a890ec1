"""``vigil incidents confirm|dismiss ID`` and ``vigil incidents stats``: operators' feedback.

Confirming says an incident was real; dismissing says it was a false alarm; a later review
replaces an earlier one. ``stats`` prints the false-alarm rate per source, class and watch rule.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
from typing import Any

from vigil import cli_common as common
from vigil.sdk import Incident, IncidentStats
from vigil.sdk.review_types import MAX_NOTE

DECISIONS = {"confirm": "confirmed", "dismiss": "dismissed"}
STATS_HEADERS = [
    "SOURCE", "CLASS", "RULE", "INCIDENTS", "FALSE_ALARMS", "RATE", "CONFIRMED", "DISMISSED",
    "REJECTED",
]  # fmt: skip


def add_actions(actions: Any, parent: argparse.ArgumentParser) -> None:
    """The review actions of ``vigil incidents`` (``actions``: its subparsers)."""
    for decision, what in (
        ("confirm", "real"),
        ("dismiss", "a false alarm"),
    ):
        parser = actions.add_parser(
            decision,
            parents=[parent],
            help=f"mark an incident as {what}",
            description=f"Record that an incident was {what}, replacing any earlier review. "
            "It counts in `vigil incidents stats`, the metrics and the page.",
            epilog=common.EXIT_CODES_HELP,
        )
        parser.add_argument("id", help="id of the incident")
        parser.add_argument("--note", default="", help=f"why (at most {MAX_NOTE} characters)")
        parser.add_argument(
            "--reviewer", default=None, metavar="NAME", help="who reviewed (your login name)"
        )
        parser.set_defaults(decision=DECISIONS[decision])
        common.handled_by(parser, review_command, "detector")
    stats = actions.add_parser(
        "stats",
        parents=[parent],
        help="incidents and false alarms per source, class and watch rule",
        description="Count the incident history per source, class and watch rule: incidents, "
        "false alarms (dismissed, or rejected by the model and not confirmed) and their rate, "
        "confirmations, dismissals and the model's rejections.",
        epilog=common.EXIT_CODES_HELP,
    )
    stats.add_argument("--source", default="", metavar="ID", help="one source only")
    stats.add_argument(
        "--since",
        type=datetime.datetime.fromisoformat,
        metavar="TIME",
        help="only incidents opened at or after this ISO time (local time without a zone)",
    )
    common.handled_by(stats, stats_command, "detector")


def login_name() -> str:
    try:
        return getpass.getuser()
    except OSError:  # no name for this user id (a bare container)
        return ""


def review_command(args: argparse.Namespace) -> int:
    reviewer = login_name() if args.reviewer is None else args.reviewer
    with common.detector_client(args) as client:
        incident = client.review_incident(args.id, args.decision, args.note, reviewer)
    return common.output(args, incident, review_line(incident))


def review_line(i: Incident) -> str:
    decision = i.review.decision if i.review is not None else "?"
    verdict = "a false alarm" if i.false_alarm else "not a false alarm"
    return f"{decision} incident {i.id} ({i.class_name} on {i.source_id}): {verdict}"


def stats_row(s: IncidentStats) -> list[object]:
    return [
        s.source_id, s.class_name, s.rule_id or "-", s.incidents, s.false_alarms,
        f"{s.false_alarm_rate:.0%}", s.confirmed, s.dismissed, s.rejected,
    ]  # fmt: skip


def stats_command(args: argparse.Namespace) -> int:
    since = args.since.timestamp() if args.since is not None else None
    with common.detector_client(args) as client:
        stats = client.incident_stats(args.source, since=since)
    text = common.table(STATS_HEADERS, [stats_row(s) for s in stats]) if stats else "no incidents"
    return common.output(args, stats, text)
