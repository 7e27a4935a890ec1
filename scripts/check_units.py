"""Static check of the systemd units in deploy/systemd (``make lint``; no init system needed).

Two layers. Our own rules, which systemd cannot know: every service restarts on failure with a
start limit, runs as a dedicated user with the hardening options we promise, stops with SIGTERM
within a timeout longer than the service's own grace period, starts an entry point that exists
(``python -m <package>`` with a ``__main__``), and the bridge is ordered after the other two.
Then ``systemd-analyze verify`` in a throw-away root (our units, the system's own units, and a
stand-in executable at the ExecStart path), where every line it prints (a misspelt key, a value
it cannot parse, a missing dependency) is an error: it says "ignoring" and exits 0 otherwise.

Usage: python scripts/check_units.py [DIR]   (exit status 1 and one line per problem)
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "clients")]
SERVICES = {"vigil-detector": "detector_service", "vigil-analyzer": "analyzer_service",
            "vigil-bridge": "bridge"}  # fmt: skip
SETTINGS = {"detector_service": "DetectorSettings", "analyzer_service": "AnalyzerSettings",
            "bridge": "BridgeSettings"}  # fmt: skip
# Seconds systemd must leave, beyond the service's own grace period, before it sends SIGKILL.
STOP_MARGIN_S = 5.0
# key -> the value it must have (None: present with any non-empty value; "": present and empty).
REQUIRED: dict[tuple[str, str], str | None] = {
    ("Unit", "StartLimitIntervalSec"): None,
    ("Unit", "StartLimitBurst"): None,
    ("Service", "Restart"): "on-failure",
    ("Service", "RestartSec"): None,
    ("Service", "User"): None,
    ("Service", "KillSignal"): "SIGTERM",
    ("Service", "TimeoutStopSec"): None,
    ("Service", "NoNewPrivileges"): "yes",
    ("Service", "ProtectSystem"): "strict",
    ("Service", "ProtectHome"): "yes",
    ("Service", "PrivateTmp"): "yes",
    ("Service", "CapabilityBoundingSet"): "",
    ("Service", "RestrictAddressFamilies"): None,
    ("Service", "SystemCallFilter"): "@system-service",
    ("Install", "WantedBy"): "vigil.target",
}
Unit = dict[tuple[str, str], list[str]]


def parse(path: pathlib.Path) -> Unit:
    """Every assignment of a unit file, repeated keys kept in order."""
    unit: Unit = defaultdict(list)
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        unit[(section, key.strip())].append(value.strip())
    return unit


def _seconds(value: str) -> float | None:
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], factor
            break
    else:
        scale = 1.0
    try:
        return float(value) * scale
    except ValueError:
        return None


def grace_s(package: str) -> float:
    """The seconds a service drains for on SIGTERM by default (its settings' ``grace_s``)."""
    settings = getattr(importlib.import_module(f"{package}.settings"), SETTINGS[package])
    grace: float = settings.model_fields["grace_s"].default
    return grace


def check_rules(name: str, unit: Unit) -> list[str]:
    problems = []
    for (section, key), wanted in REQUIRED.items():
        values = unit.get((section, key))
        if values is None:
            problems.append(f"{name}: [{section}] {key}= is missing")
        elif wanted is not None and values[-1] != wanted:
            problems.append(f"{name}: [{section}] {key}={values[-1]} (want {wanted!r})")
        elif wanted is None and not values[-1]:
            problems.append(f"{name}: [{section}] {key}= is empty")
    if unit.get(("Service", "User"), ["root"])[-1] in ("root", "0"):
        problems.append(f"{name}: runs as root; use a dedicated user")
    exec_start = unit.get(("Service", "ExecStart"), [""])[-1].split()
    module = SERVICES.get(name)
    if module is not None:
        least = grace_s(module) + STOP_MARGIN_S
        stop = _seconds(unit.get(("Service", "TimeoutStopSec"), ["0"])[-1])
        if stop is None or stop < least:
            problems.append(f"{name}: TimeoutStopSec must be at least {least:g} s (its grace + 5)")
    if len(exec_start) != 3 or exec_start[1] != "-m" or not exec_start[0].startswith("/"):
        problems.append(f"{name}: ExecStart must be /absolute/python -m <package>")
    elif not (REPO / exec_start[2] / "__main__.py").is_file():
        problems.append(f"{name}: ExecStart runs {exec_start[2]}, which has no __main__.py")
    elif module is not None and exec_start[2] != module:
        problems.append(f"{name}: ExecStart runs {exec_start[2]}, not {module}")
    writable = " ".join(unit.get(("Service", "ReadWritePaths"), [])).split()
    for state in unit.get(("Service", "StateDirectory"), []):
        for directory in state.split():
            if f"/var/lib/{directory}" not in writable:
                problems.append(f"{name}: ReadWritePaths= lacks /var/lib/{directory}")
    if name == "vigil-bridge":
        after = " ".join(unit.get(("Unit", "After"), [])).split()
        for other in ("vigil-detector.service", "vigil-analyzer.service"):
            if other not in after:
                problems.append(f"{name}: After= lacks {other}")
    return problems


def systemd_verify(directory: pathlib.Path, units: list[pathlib.Path]) -> list[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return ["systemd-analyze not found: install Debian's systemd package (make system)"]
    system_units = pathlib.Path("/lib/systemd/system")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
        target = root / "etc/systemd/system"
        target.mkdir(parents=True)
        for path in units:
            shutil.copy(path, target / path.name)
            for command in parse(path).get(("Service", "ExecStart"), []):
                # verify checks that the executable exists; ours lives in the install's venv.
                executable = root / command.split()[0].lstrip("-@:+!").lstrip("/")
                executable.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy("/bin/true", executable)
        result = subprocess.run(
            [analyze, "verify", f"--root={root}", "--man=no", *(p.name for p in units)],
            capture_output=True,
            text=True,
            check=False,
        )
    lines = (result.stdout + result.stderr).replace(str(target) + "/", "").splitlines()
    problems = [f"systemd-analyze: {line}" for line in lines if line.strip()]
    if result.returncode and not problems:
        problems.append(f"systemd-analyze verify exited {result.returncode}")
    return problems


def check(directory: pathlib.Path) -> list[str]:
    units = sorted(directory.glob("*.service")) + sorted(directory.glob("*.target"))
    problems = []
    services = {p.stem for p in units if p.suffix == ".service"}
    for missing in sorted(set(SERVICES) - services):
        problems.append(f"{missing}.service is missing")
    for path in units:
        if path.suffix == ".service":
            problems.extend(check_rules(path.stem, parse(path)))
    return problems + systemd_verify(directory, units)


def main() -> int:
    directory = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "deploy" / "systemd"
    problems = check(directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{directory}: units pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
