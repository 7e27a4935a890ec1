"""``python -m vigil.bench NAME|all [--json]``.

Exits 1 when a benchmark that checks a promise (its result has ``passed``) reports it broken, after
every benchmark asked for has run and printed its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vigil.bench import REGISTRY


def logs_to_stderr() -> None:
    """Send vLLM's logs (stdout by default, engine subprocesses included) to stderr, so that
    stdout holds the figures alone: one JSON object a benchmark with ``--json``."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil bench", description=__doc__)
    parser.add_argument("name", choices=[*REGISTRY, "all"])
    parser.add_argument("--json", action="store_true", help="print one JSON object per benchmark")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of load for the long benchmarks"
    )
    parser.add_argument(
        "--sources", type=int, default=None, help="cameras (always-on), sources (alert, scale)"
    )
    parser.add_argument(
        "--moving", type=int, default=None, help="cameras seeing motion (always-on)"
    )
    parser.add_argument("--incidents", type=int, default=None, help="incidents measured (alert)")
    parser.add_argument("--rules", type=int, default=None, help="watch rules (alert)")
    parser.add_argument("--analyses", type=int, default=None, help="analyses per run (scale)")
    parser.add_argument("--viewers", type=int, default=None, help="WebSocket viewers (scale)")
    parser.add_argument("--fps", type=float, default=None, help="frames/s of each source (scale)")
    args = parser.parse_args(argv)
    logs_to_stderr()
    names = list(REGISTRY) if args.name == "all" else [args.name]
    failed: list[str] = []
    for name in names:
        options = {"repeat": args.repeat}
        if args.duration is not None:
            options["duration"] = args.duration
        if args.sources is not None:
            options["sources"] = args.sources
        if args.moving is not None:
            options["moving"] = args.moving
        if args.incidents is not None:
            options["incidents"] = args.incidents
        if args.rules is not None:
            options["rules"] = args.rules
        if args.analyses is not None:
            options["analyses"] = args.analyses
        if args.viewers is not None:
            options["viewers"] = args.viewers
        if args.fps is not None:
            options["fps"] = args.fps
        result = REGISTRY[name][1]()(options)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"== {name}: {REGISTRY[name][0]}")
            for key, value in result.items():
                print(f"  {key:36} {value}")
        if result.get("passed") is False:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
