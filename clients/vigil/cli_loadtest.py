"""``vigil loadtest``: argparse wiring for the load generator (``vigil.loadgen``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from vigil import cli_extras
from vigil.core import ports
from vigil.loadgen.scenario import MAX_DURATION_S, Scenario, ScenarioError

# Exit statuses: as the rest of the CLI, 2 for bad usage.
OK, FAILED, USAGE = 0, 1, 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "loadtest",
        help="load-test the services with generated gRPC and WebSocket clients",
        description="Run N Detect streams, M source subscribers, K WebSocket viewers (a share "
        "of them slow) and J analysis+chat workers for a bounded time, then report throughput, "
        "latency percentiles, drops, errors and each service's resource use. Only loopback "
        "addresses unless --allow-remote.",
    )
    p.add_argument("--detector", default=ports.DETECTOR_ADDRESS, help="detector gRPC address")
    p.add_argument("--analyzer", default=ports.ANALYZER_ADDRESS, help="analyzer gRPC address")
    p.add_argument("--bridge", default=ports.BRIDGE_URL, help="bridge base URL")
    p.add_argument(
        "--spawn",
        choices=["process"],
        nargs="?",
        const="process",
        help="start the services on free ports first, each in its own process",
    )
    p.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help=f"seconds of load (at most {MAX_DURATION_S:.0f})")  # fmt: skip
    p.add_argument("--detect-streams", type=int, default=1, metavar="N")
    p.add_argument("--detect-fps", type=float, default=5.0, help="frames/s per Detect stream")
    p.add_argument("--subscribers", type=int, default=2, metavar="M")
    p.add_argument("--slow-subscribers", type=int, default=0, metavar="N",
                   help="how many of the subscribers read slowly")  # fmt: skip
    p.add_argument("--viewers", type=int, default=4, metavar="K")
    p.add_argument("--slow-share", type=float, default=0.25, help="share of slow viewers, 0-1")
    p.add_argument("--slow-interval", type=float, default=1.0, metavar="S",
                   help="a slow viewer reads one message per S seconds")  # fmt: skip
    p.add_argument("--slow-rate", type=float, default=None, metavar="BYTES_PER_S",
                   help="or reads at this many bytes per second")  # fmt: skip
    p.add_argument("--format", choices=["json", "binary"], default="binary", dest="viewer_format")
    p.add_argument("--jobs", type=int, default=0, metavar="J",
                   help="concurrent upload+analysis+chat workers")  # fmt: skip
    p.add_argument("--source-fps", type=float, default=15.0, help="fps of the test sources")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow non-loopback targets (only machines you may load-test)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=run)
    return p


def scenario_from(args: argparse.Namespace) -> Scenario:
    return Scenario(
        detector=args.detector,
        analyzer=args.analyzer,
        bridge=args.bridge,
        duration_s=args.duration,
        detect_streams=args.detect_streams,
        detect_fps=args.detect_fps,
        subscribers=args.subscribers,
        slow_subscribers=args.slow_subscribers,
        viewers=args.viewers,
        slow_share=args.slow_share,
        slow_interval_s=args.slow_interval,
        slow_bytes_per_s=args.slow_rate,
        viewer_format=args.viewer_format,
        jobs=args.jobs,
        source_fps=args.source_fps,
        allow_remote=args.allow_remote,
    )


@contextlib.contextmanager
def _services(
    args: argparse.Namespace, scenario: Scenario
) -> Iterator[tuple[Scenario, dict[str, int]]]:
    if not args.spawn:
        yield scenario, {}
        return
    from dataclasses import replace

    from vigil.loadgen import spawn

    with spawn.processes(viewers=scenario.viewers) as services:
        targets = replace(
            scenario,
            detector=services.detector,
            analyzer=services.analyzer,
            bridge=services.bridge,
        )
        yield targets, services.pids


def run(args: argparse.Namespace) -> int:
    # Spawning starts every service; loading running ones needs only the clients.
    cli_extras.require("loadtest", "all" if args.spawn else "loadtest")
    from vigil.loadgen import report, run_scenario

    scenario = scenario_from(args)
    try:
        scenario.validate()
    except ScenarioError as e:
        print(f"vigil loadtest: {e}", file=sys.stderr)
        return USAGE
    with _services(args, scenario) as (targets, pids):
        # The hard cap: whatever hangs, the run ends this long after its window.
        limit = targets.duration_s + targets.grace_s + 30
        try:
            result = asyncio.run(asyncio.wait_for(run_scenario(targets, pids=pids), limit))
        except (TimeoutError, OSError, ConnectionError) as e:
            print(f"vigil loadtest: {e!r}", file=sys.stderr)
            return FAILED
    print(json.dumps(result) if args.json else report.table(result))
    return OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
