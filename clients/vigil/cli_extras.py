"""Which optional extra a ``vigil`` command needs, checked before it starts.

``pip install vigil`` brings the SDK and the client commands; the services and the heavier tools
come with extras (``vigil[all]``, ``vigil[video]``, ...). A command that needs one names it
instead of failing later with an ImportError, or, for ``vigil run``, with services that crash on
start. The extras' contents are read from the installed package's metadata, so they are written
once, in pyproject.toml.
"""

from __future__ import annotations

import importlib.metadata
import re

from vigil import cli_common as common

# "name[extras] >=1; extra == 'x'": the distribution's name, and the extra that asks for it.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SELF_EXTRAS = re.compile(r"^vigil\[([^\]]+)\]")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _requirements(extra: str) -> list[str]:
    """The requirements ``vigil[extra]`` adds; none when vigil's metadata is not there."""
    try:
        declared = importlib.metadata.requires("vigil") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found: list[str] = []
    for requirement in declared:
        marker = _EXTRA_MARKER.search(requirement)
        if marker is not None and marker.group(1) == extra:
            found.append(requirement.split(";", 1)[0].strip())
    return found


def missing(extra: str) -> list[str]:
    """The distributions ``vigil[extra]`` (and the extras it includes) brings that are not
    installed."""
    absent: list[str] = []
    seen: set[str] = set()
    pending = [extra]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        for requirement in _requirements(current):
            if included := _SELF_EXTRAS.match(requirement):
                pending += [name.strip() for name in included.group(1).split(",")]
                continue
            name = _NAME.match(requirement)
            if name is None or name.group(0) in absent:
                continue
            try:
                importlib.metadata.distribution(name.group(0))
            except importlib.metadata.PackageNotFoundError:
                absent.append(name.group(0))
    return absent


def require(command: str, extra: str) -> None:
    """Refuse ``vigil COMMAND`` (a usage error) when ``vigil[extra]`` is not installed."""
    if absent := missing(extra):
        raise common.UsageError(
            f"`vigil {command}` needs the {extra!r} extra, which this install lacks "
            f"(missing: {', '.join(absent)}): pip install 'vigil[{extra}]'"
        )
