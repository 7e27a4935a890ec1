"""Passwords in service URLs are masked for logs and scrubbed from messages."""

from __future__ import annotations

import pytest

from vigil.core.urls import masked, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://vigil:s3cret@db:5432/vigil", "postgresql://vigil:***@db:5432/vigil"),
        # The user part ends at the last '@' of the authority; ':' and '@' may be in the password.
        ("postgresql://vigil:a:b@c@db/vigil", "postgresql://vigil:***@db/vigil"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "postgresql://db/vigil?user=vigil&password=s3cret&sslmode=require",
            "postgresql://db/vigil?user=vigil&password=***&sslmode=require",
        ),
        ("postgresql://vigil@db/vigil", "postgresql://vigil@db/vigil"),
        ("postgresql://vigil:@db/vigil", "postgresql://vigil:***@db/vigil"),
        # A user named like the password keeps its name.
        ("postgresql://vigil:vigil@db/vigil", "postgresql://vigil:***@db/vigil"),
        ("not a url", "not a url"),
    ],
)
def test_masked_hides_every_password(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_redact_scrubs_raw_and_decoded_passwords() -> None:
    url = "postgresql://vigil:p%40ss%2Fw@db/vigil?password=other"
    text = "failed for p%40ss%2Fw, p@ss/w and other"
    assert redact(text, url) == "failed for ***, *** and ***"
    assert redact("nothing secret", "postgresql://db/vigil") == "nothing secret"
