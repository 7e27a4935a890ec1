"""The shipped systemd units pass ``scripts/check_units.py``, and the check catches what matters.

The checker runs as ``make lint`` runs it (a subprocess, its exit status and its lines); each
broken unit is the shipped one with one change.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
NEEDS_SYSTEMD = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def check(directory: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_units.py"), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )


def broken(tmp_path: pathlib.Path, unit: str, pattern: str, replacement: str) -> pathlib.Path:
    directory = tmp_path / "systemd"
    shutil.copytree(UNITS, directory)
    path = directory / unit
    text, count = re.subn(pattern, replacement, path.read_text(), flags=re.MULTILINE)
    assert count == 1, pattern
    path.write_text(text)
    return directory


@NEEDS_SYSTEMD
def test_the_shipped_units_pass() -> None:
    result = check(UNITS)
    assert result.returncode == 0, result.stderr
    assert {p.name for p in UNITS.glob("*.service")} == {
        "vigil-detector.service",
        "vigil-analyzer.service",
        "vigil-bridge.service",
    }


@NEEDS_SYSTEMD
@pytest.mark.parametrize(
    ("unit", "pattern", "replacement", "problem"),
    [
        ("vigil-detector.service", r"^NoNewPrivileges=yes\n", "", "NoNewPrivileges= is missing"),
        ("vigil-analyzer.service", r"^Restart=on-failure", "Restart=no", "Restart=no"),
        ("vigil-bridge.service", r"^User=vigil", "User=root", "runs as root"),
        ("vigil-bridge.service", r"^ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem"),
        ("vigil-analyzer.service", r"^TimeoutStopSec=30", "TimeoutStopSec=3", "TimeoutStopSec"),
        ("vigil-detector.service", r"-m detector_service$", "-m detector_svc", "no __main__.py"),
        ("vigil-bridge.service", r"^After=.*$", "After=network-online.target", "After= lacks"),
        (
            "vigil-analyzer.service",
            r"^ReadWritePaths=.*$",
            "ReadWritePaths=/var/cache/vigil/analyzer",
            "lacks /var/lib/vigil/analyzer",
        ),
        # What only systemd knows: a misspelt key and a value it cannot parse.
        ("vigil-detector.service", r"^PrivateTmp=yes", "PrivateTemp=yes", "PrivateTemp"),
        ("vigil-bridge.service", r"^RestartSec=2", "RestartSec=soon", "parse sec value"),
    ],
)
def test_a_unit_that_breaks_a_rule_fails_the_check(
    tmp_path: pathlib.Path, unit: str, pattern: str, replacement: str, problem: str
) -> None:
    result = check(broken(tmp_path, unit, pattern, replacement))
    assert result.returncode == 1
    assert problem in result.stderr
