"""`make lint` type-checks the page's modules (bridge/static: TypeScript's checkJs, JSDoc types,
the version pinned in package-lock.json): the check passes on the page as it is, and fails on a
copy with type errors in it, each reported where it was made, so a mistake in a module cannot
pass lint unnoticed."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATIC = ROOT / "bridge" / "static"
TSC = ROOT / "node_modules" / ".bin" / "tsc"
# tsc --pretty false: "<path>(<line>,<column>): error TS<code>: <message>"
ERROR = re.compile(r"^(?:.*/)?js/(?P<module>[\w.]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+):")

# Mistakes a JSDoc type catches, each with the error TypeScript reports for it in the module it
# is added to: a string where a number is declared, a toast kind there is not, a view's method
# misspelled, an element looked up with no constructor to check it against.
MISTAKES = [
    ("format.js", 'export const seconds = clock("90");', "TS2345"),
    ("live.js", 'toast("fatal", "Live stream lost");', "TS2345"),
    ("main.js", "window.vigil.live.strat();", "TS2551"),
    ("chat.js", 'byId("chat-input", "input");', "TS2345"),
]


def tsc(static: pathlib.Path) -> subprocess.CompletedProcess[str]:
    assert TSC.exists(), f"{TSC} is missing: `make node-deps` installs it"
    return subprocess.run(
        [str(TSC), "-p", str(static), "--pretty", "false"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_page_type_checks() -> None:
    result = tsc(STATIC)
    assert result.returncode == 0, result.stdout + result.stderr


def test_type_errors_in_the_modules_fail_the_check(tmp_path: pathlib.Path) -> None:
    # One copy of the page with every mistake in it: one run of tsc, which takes seconds.
    static = tmp_path / "static"
    shutil.copytree(STATIC, static)
    expected = set()
    for module, line, code in MISTAKES:
        path = static / "js" / module
        text = path.read_text(encoding="utf-8")
        path.write_text(text + line + "\n", encoding="utf-8")
        expected.add((module, text.count("\n") + 1, code))
    result = tsc(static)
    assert result.returncode != 0, result.stdout
    reported = {
        (match["module"], int(match["line"]), match["code"])
        for match in map(ERROR.match, result.stdout.splitlines())
        if match
    }
    assert reported == expected, result.stdout
