"""Benchmarks that time a service's own stages live in that service (``vigil`` never imports a
service): ``vigil bench`` runs them as a child process and reads the figures it prints.

The child is ``python -m MODULE OPTIONS_JSON`` with this interpreter (as ``vigil run`` starts a
service); it prints one JSON object as the last line of its stdout, and logs to stderr.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from vigil import launcher
from vigil.supervisor import describe_exit


def run_module(module: str, options: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [*launcher.command(module), json.dumps(options)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({describe_exit(done.returncode)})")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{module} printed no figures")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures
