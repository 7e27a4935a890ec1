"""The ``vigil`` command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil",
        description="Vigil: live weapon detection and long-video analysis over gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="start the detector, the analyzer and the bridge (what `make run` does)",
        description="Start all services on their embedded defaults (ports and settings come "
        "from VIGIL_* environment variables) and stop them together on Ctrl-C.",
    )
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="give up if the services are not healthy after S seconds (default 180)",
    )
    bench = commands.add_parser(
        "bench",
        help="run a benchmark (or all of them) and print its figures",
        description="Each benchmark prints its figures and a headline ratio against a baseline "
        "measured in the same run.",
    )
    bench.add_argument("name", help="benchmark name, or 'all'")
    bench.add_argument("--json", action="store_true", help="print one JSON object per benchmark")
    bench.add_argument("--repeat", type=int, default=30, help="repetitions per measurement")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from vigil.launcher import run

        return run(ready_timeout_s=args.ready_timeout)
    if args.command == "bench":
        from vigil.bench.__main__ import main as bench

        return bench([args.name, *(["--json"] if args.json else []), "--repeat", str(args.repeat)])
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
