"""A source's id: the one rule the detector enforces and the bridge checks before asking it.

An id is 1-64 letters, digits, '-' or '_', and nothing else: the whole string must match
(``cam\\n`` is not an id, though ``re.match(r"^...$")`` would let it through).
"""

from __future__ import annotations

import re

PATTERN = r"[A-Za-z0-9_-]{1,64}"
#: The rule in words, for error messages.
RULE = "1-64 letters, digits, '-' or '_'"
#: For pydantic and OpenAPI ``pattern`` (their ``$`` ends the text; Python's would also match
#: before a final newline, so Python code calls ``is_source_id``).
ANCHORED = rf"^{PATTERN}$"
#: The same, or empty (a filter that may name no source).
ANCHORED_OR_EMPTY = rf"^(?:{PATTERN})?$"

_SOURCE_ID = re.compile(PATTERN)


def is_source_id(value: str) -> bool:
    return _SOURCE_ID.fullmatch(value) is not None
