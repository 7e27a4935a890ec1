"""The ``vigil`` command line."""

from __future__ import annotations

import argparse
import sys

from vigil import (
    cli_analyzer,
    cli_common,
    cli_detector,
    cli_extras,
    cli_loadtest,
    cli_recording_analysis,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil",
        description="Vigil: live weapon detection and long-video analysis over gRPC.",
        epilog=f"`vigil COMMAND --help` explains each command. {cli_common.EXIT_CODES_HELP}",
    )
    cli_common.connection_options(parser)
    # The same options after the command name (`vigil sources ls --detector ADDR`).
    connection = argparse.ArgumentParser(add_help=False)
    cli_common.connection_options(connection)
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
        help="warn if the services are not healthy after S seconds (default 180)",
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
    bench.add_argument(
        "--duration", type=float, default=None, help="seconds of load (soak: default 600)"
    )
    cli_detector.add_parsers(commands, connection)
    cli_analyzer.add_parsers(commands, connection)
    cli_recording_analysis.add_parser(commands, connection)
    cli_loadtest.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in {"run", "bench"}:
        # Both start the services, which the base install does not carry.
        try:
            cli_extras.require(args.command, "all")
        except cli_common.UsageError as exc:
            cli_common.fail(str(exc))
            return cli_common.EXIT_USAGE
    if args.command == "run":
        from vigil.launcher import run

        return run(ready_timeout_s=args.ready_timeout)
    if args.command == "bench":
        from vigil.bench.__main__ import main as bench

        duration = ["--duration", str(args.duration)] if args.duration is not None else []
        json_flag = ["--json"] if args.json else []
        return bench([args.name, *json_flag, "--repeat", str(args.repeat), *duration])
    return cli_common.execute(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
