"""Service URLs that carry a password (a database's, a cache's): the forms that may be logged.

``masked(url)`` replaces the password of the user part and of a ``password=`` query parameter by
``***``; ``redact(text, url)`` scrubs those passwords out of any text a library produced from the
URL (an error message), in their raw and their percent-decoded forms. A libpq ``key=value``
connection string (``host=db password=secret``) has its ``password`` hidden the same way: it is
what an operator may write where a URL was expected, so a refusal that prints it must not leak it.
"""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"

# libpq conninfo: ``password = value`` where value is bare (up to whitespace) or single-quoted
# with backslash escapes.
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` as it may be printed: every password in it replaced by ``***``."""
    head, authority, tail = _split(url)
    if not head:
        return _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + MASK, url)
    userinfo, at, hostport = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    path, question, rest = tail.partition("?")
    query, hash_, fragment = rest.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        pieces.append(f"{name}={MASK}" if eq and value and _is_password(name) else piece)
    return f"{head}{authority}{path}{question}{'&'.join(pieces)}{hash_}{fragment}"


def redact(text: str, url: str) -> str:
    """``text`` with the passwords of ``url`` (raw and percent-decoded) replaced by ``***``."""
    for secret in _passwords(url):
        for form in sorted({secret, urllib.parse.unquote(secret)}, key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def _split(url: str) -> tuple[str, str, str]:
    """``scheme://``, the authority, and the rest; ("", "", url) when ``url`` has no scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    # The authority ends at the first '/', '?' or '#'.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return scheme + sep, rest[:end], rest[end:]


def _is_password(name: str) -> bool:
    return urllib.parse.unquote_plus(name).lower() == "password"


def _passwords(url: str) -> list[str]:
    """The raw passwords in ``url``, longest first (one may contain another)."""
    head, authority, tail = _split(url)
    if not head:
        found = []
        for match in _CONNINFO_PASSWORD.finditer(url):
            quoted = match.group(2)
            found.append(quoted)
            if quoted.startswith("'"):
                found.append(re.sub(r"\\(.)", r"\1", quoted.strip("'")))
        return sorted({secret for secret in found if secret}, key=len, reverse=True)
    userinfo, at, _ = authority.rpartition("@")
    found = [userinfo.partition(":")[2]] if at else []
    query = tail.partition("?")[2].partition("#")[0]
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        if eq and _is_password(name):
            found.append(value)
    return sorted({secret for secret in found if secret}, key=len, reverse=True)
