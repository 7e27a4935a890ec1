"""Files only the service's user may read: the sources file, the data directory and its store.

Camera URIs in the sources file carry passwords; incidents, snapshots and clips show what the
cameras saw. Both are for the service's user alone.
"""

from __future__ import annotations

import os
import pathlib
import stat

from vigil.core.errors import InvalidInput


def require_private(path: pathlib.Path) -> None:
    """Refuse a file that group or others may read or write: it may hold camera passwords.

    Refused, not warned about: a warning scrolls by while the passwords stay readable, and a
    service that will not start gets fixed at once.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidInput(f"cannot read sources file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(
            f"sources file {path} is readable by others (mode {stat.S_IMODE(mode):o}) and may "
            f"hold camera passwords: run `chmod 600 {path}`"
        )


def private_dir(path: pathlib.Path) -> pathlib.Path:
    """Create ``path`` (and parents) as 0700, tightening it if it already exists."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def private_file(path: pathlib.Path) -> pathlib.Path:
    """Create ``path`` empty as 0600 if missing, and tighten it to 0600 if it exists."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)
    return path
