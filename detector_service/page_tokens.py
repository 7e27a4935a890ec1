"""Page tokens of the detector's keyset-paged listings: the last row's time and sequence, under
the name of the listing, so a token of one listing is refused by another."""

from __future__ import annotations

import base64
import binascii


def encode(kind: str, at_ns: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{at_ns}:{seq}".encode()).decode()


def decode(kind: str, token: str) -> tuple[int, int]:
    """(time, sequence) of a token ``encode(kind, ...)`` made; ``ValueError`` for any other."""
    try:
        found, at_ns, seq = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if found != kind:
            raise ValueError(token)
        return int(at_ns), int(seq)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("invalid page token") from exc
