"""Passwords in service URLs are masked for logs and scrubbed from messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from analyzer_service.settings import AnalyzerSettings
from analyzer_service.stores import open_store
from detector_service.event_stores import open_event_store
from detector_service.incidents.stores import open_incident_store
from detector_service.settings import DetectorSettings
from detector_service.source_stores import open_source_store
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
        # A libpq key=value connection string, bare or quoted, any case and spacing.
        ("host=db password=s3cret user=vigil", "host=db password=*** user=vigil"),
        ("host=db PASSWORD = 'two words' port=5432", "host=db PASSWORD = *** port=5432"),
        ("host=db password='it\\'s' dbname=v", "host=db password=*** dbname=v"),
    ],
)
def test_masked_hides_every_password(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_redact_scrubs_raw_and_decoded_passwords() -> None:
    url = "postgresql://vigil:p%40ss%2Fw@db/vigil?password=other"
    text = "failed for p%40ss%2Fw, p@ss/w and other"
    assert redact(text, url) == "failed for ***, *** and ***"
    assert redact("nothing secret", "postgresql://db/vigil") == "nothing secret"


def test_redact_scrubs_conninfo_passwords() -> None:
    conninfo = "host=db password='it\\'s secret' user=vigil"
    text = "cannot connect to host=db password='it\\'s secret': it's secret was refused"
    assert redact(text, conninfo) == "cannot connect to host=db password=***: *** was refused"


def test_database_url_refusals_never_echo_a_password(tmp_path: Path) -> None:
    """Every 'must start with postgresql://' refusal names the value with its password hidden."""
    conninfo = "host=db user=vigil password=hunter2"
    detector = DetectorSettings(data_dir=tmp_path, database_url=conninfo)
    analyzer = AnalyzerSettings(data_dir=tmp_path, database_url=conninfo)
    refusals: list[Callable[[], object]] = [
        lambda: open_incident_store(detector),
        lambda: open_event_store(detector),
        lambda: open_source_store(detector),
        lambda: asyncio.run(open_store(analyzer)),
    ]
    for refuse in refusals:
        with pytest.raises(Exception, match="must start with postgresql://") as refused:
            refuse()
        assert "hunter2" not in str(refused.value)
        assert "password=***" in str(refused.value)
