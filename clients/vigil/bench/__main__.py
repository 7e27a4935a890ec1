"""``python -m vigil.bench NAME|all [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

from vigil.bench import REGISTRY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil bench", description=__doc__)
    parser.add_argument("name", choices=[*REGISTRY, "all"])
    parser.add_argument("--json", action="store_true", help="print one JSON object per benchmark")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of load for the long benchmarks"
    )
    args = parser.parse_args(argv)
    names = list(REGISTRY) if args.name == "all" else [args.name]
    for name in names:
        options = {"repeat": args.repeat}
        if args.duration is not None:
            options["duration"] = args.duration
        result = REGISTRY[name][1]()(options)
        if args.json:
            print(json.dumps(result))
        else:
            print(f"== {name}: {REGISTRY[name][0]}")
            for key, value in result.items():
                print(f"  {key:36} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
