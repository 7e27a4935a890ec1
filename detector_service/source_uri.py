"""A source's URI with its secrets kept inside.

Camera URIs carry credentials (``rtsp://admin:hunter2@cam/stream``, ``https://cam/mjpeg?token=...``).
``SourceUri`` is the one type every path holds: ``str()``, ``repr()`` and ``masked`` give the form
that may leave the service (``rtsp://admin:***@cam/stream``); only ``reveal()`` gives the real URI,
and only the capture that opens the stream calls it. ``redact()`` scrubs the secrets out of any
text a library produced from the real URI (an FFmpeg error, an exception message).
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"

# Query parameters whose values are credentials. Matched on the name, case-insensitively, as a
# whole word or a suffix ("api_key", "X-Amz-Signature", "access_token").
_SECRET_PARAM = re.compile(
    r"(?:^|[_\-.])(?:password|passwd|pwd|pass|token|key|secret|auth|authorization|signature|sig|"
    r"credential|credentials|apikey|session)$",
    re.IGNORECASE,
)
# Fallback for text that is not a parsable URL: scheme://user:password@ with anything as password.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/@:\s]*:)(?P<secret>[^/@\s]*)@")


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(name))


class SourceUri:
    """An immutable source URI whose printable forms never contain its secrets."""

    __slots__ = ("_raw", "_secrets", "masked")

    def __init__(self, raw: str) -> None:
        self._raw = raw
        self.masked, self._secrets = _mask(raw)

    def reveal(self) -> str:
        """The real URI, credentials included: only for opening the stream."""
        return self._raw

    @property
    def has_secrets(self) -> bool:
        return bool(self._secrets)

    def redact(self, text: str) -> str:
        """``text`` with the real URI and every secret in it replaced by their masked forms."""
        if self._raw and self._raw != self.masked:
            text = text.replace(self._raw, self.masked)
        for secret in self._secrets:
            # Libraries also print the percent-decoded form; scrub both.
            for form in {secret, urllib.parse.unquote(secret)}:
                if form:
                    text = text.replace(form, MASK)
        return _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"SourceUri({self.masked!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceUri) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would carry the secret to wherever the bytes go: refuse it.
        raise TypeError("SourceUri cannot be pickled")


def credentials_parse(raw: str) -> bool:
    """Whether a URI's user:password, if it has one, is where a URL parser finds it. A password
    with an unencoded '/', '?' or '#' ends the authority early ("rtsp://admin:pa#ss@cam" parses
    as host "admin", port "pa"): then the password cannot be found to mask, and such a URI must
    be refused rather than shown."""
    _, sep, rest = raw.partition("://")
    if not sep:
        return True
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        return True
    port = authority.rpartition(":")[2] if ":" in authority and "]" not in authority else ""
    if port and not port.isdigit():
        return False
    # "rtsp://admin:12/34@cam": a numeric-looking port, and the rest of the password in the path.
    return "@" not in remainder.split("?", 1)[0].split("#", 1)[0]


def mask(raw: str) -> str:
    """The printable form of a URI (or any text that may hold one)."""
    return SourceUri(raw).masked


def _mask(raw: str) -> tuple[str, tuple[str, ...]]:
    if "://" not in raw:
        return raw, ()  # a device index or a file path: nothing to hide
    try:
        parts = urllib.parse.urlsplit(raw)
        password = parts.password
    except ValueError:
        # Not a URL urllib accepts (a bad port, brackets): mask the userinfo by pattern.
        found = tuple(m.group("secret") for m in _USERINFO.finditer(raw) if m.group("secret"))
        return _USERINFO.sub(lambda m: m.group("head") + MASK + "@", raw), found
    secrets: list[str] = []
    netloc = parts.netloc
    if password is not None and "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, raw_password = userinfo.partition(":")
        if raw_password:
            secrets.append(raw_password)
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for piece in query.split("&"):
            name, eq, value = piece.partition("=")
            if eq and value and is_secret_param(urllib.parse.unquote_plus(name)):
                secrets.append(value)
                value = MASK
            pairs.append(f"{name}{eq}{value}")
        query = "&".join(pairs)
    masked = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not secrets:
        return raw, ()
    # Longest first, so a secret that contains another is replaced whole.
    return masked, tuple(sorted(set(secrets), key=len, reverse=True))
