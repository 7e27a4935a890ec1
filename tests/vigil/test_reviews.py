"""Operators' feedback through the SDK (both flavours) and the CLI, against the real detector."""

from __future__ import annotations

import asyncio
import getpass
import json
import time

import pytest

from detector_service.server import DetectorServer
from tests.vigil.conftest import stage_incident, wait_for_incident_subscribers
from tests.vigil.test_cli_detector import vigil
from vigil.cli import main
from vigil.core.errors import InvalidInput, NotFound
from vigil.sdk import AsyncDetectorClient, DetectorClient, IncidentEvent, IncidentStats, Review


def incident_ids(client: DetectorClient, count: int) -> list[str]:
    """The ids of the history's incidents, newest first, once it holds ``count``."""
    deadline = time.monotonic() + 5
    while len(items := client.list_incidents().items) < count:
        assert time.monotonic() < deadline, "the incidents never reached the history"
        time.sleep(0.02)
    return [i.id for i in items]


def test_review_and_stats_with_the_blocking_client(detector: DetectorServer) -> None:
    with DetectorClient(f"127.0.0.1:{detector.port}") as client:
        assert client.incident_stats() == []
        stream = client.incidents()
        wait_for_incident_subscribers(detector)
        stage_incident(detector, "door", close=True)
        stage_incident(detector, "hall", close=False)
        hall, door = incident_ids(client, 2)
        assert client.list_incidents().items[0].review is None

        dismissed = client.review_incident(door, "dismissed", "a phone", "ana")
        assert dismissed.id == door
        assert dismissed.false_alarm
        assert isinstance(dismissed.review, Review)
        assert (dismissed.review.decision, dismissed.review.note) == ("dismissed", "a phone")
        assert dismissed.review.reviewer == "ana"
        assert dismissed.review.reviewed_at is not None
        assert dismissed.review.reviewed_at == pytest.approx(time.time(), abs=60)
        confirmed = client.review_incident(hall, "confirmed")
        assert (confirmed.review is not None, confirmed.false_alarm) == (True, False)

        kinds: list[str] = []
        for event in stream:
            assert isinstance(event, IncidentEvent)
            kinds.append(event.kind)
            if event.kind == "reviewed":
                assert event.incident.id == door
                assert event.incident.false_alarm
                stream.cancel()
        assert kinds == ["opened", "closed", "opened", "reviewed"]

        stats = client.incident_stats()
        assert all(isinstance(s, IncidentStats) for s in stats)
        got = [(s.source_id, s.class_name, s.rule_id, s.incidents, s.false_alarms) for s in stats]
        assert got == [("door", "knife", "", 1, 1), ("hall", "knife", "", 1, 0)]
        assert stats[0].false_alarm_rate == 1.0
        assert stats[0].dismissed == 1
        assert stats[1].confirmed == 1
        assert [s.source_id for s in client.incident_stats("hall")] == ["hall"]
        assert client.incident_stats(since=time.time() + 3600) == []

        with pytest.raises(NotFound, match="no incident 'nope'"):
            client.review_incident("nope", "confirmed")
        # Refused before a round trip: the service would refuse it too.
        with pytest.raises(InvalidInput, match="decision"):
            client.review_incident(door, "maybe")
        with pytest.raises(InvalidInput, match="note"):
            client.review_incident(door, "dismissed", "n" * 501)


async def test_review_and_stats_with_the_async_client(detector: DetectorServer) -> None:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        stream = client.incidents("gate")
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.to_thread(wait_for_incident_subscribers, detector)
        stage_incident(detector, "gate", close=False)
        opened = await asyncio.wait_for(reader, 5)
        reviewed = await client.review_incident(opened.incident.id, "dismissed", reviewer="bo")
        assert reviewed.review is not None
        assert (reviewed.review.decision, reviewed.review.reviewer) == ("dismissed", "bo")
        assert reviewed.is_open
        assert reviewed.false_alarm
        event = await asyncio.wait_for(anext(stream), 5)
        assert (event.kind, event.incident.false_alarm) == ("reviewed", True)
        stream.cancel()
        (stats,) = await client.incident_stats("gate")
        assert (stats.incidents, stats.false_alarms, stats.dismissed) == (1, 1, 1)
        with pytest.raises(NotFound):
            await client.review_incident("nope", "dismissed")


def test_cli_confirm_dismiss_and_stats(
    detector: DetectorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{detector.port}"
    stage_incident(detector, "door", close=True)
    with DetectorClient(address) as client:
        (door,) = incident_ids(client, 1)

    assert main(["incidents", "stats", "--detector", address]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "SOURCE", "CLASS", "RULE", "INCIDENTS", "FALSE_ALARMS", "RATE", "CONFIRMED", "DISMISSED",
        "REJECTED",
    ]  # fmt: skip
    assert table[1].split() == ["door", "knife", "-", "1", "0", "0%", "0", "0", "0"]

    command = ["incidents", "dismiss", door, "--note", "a phone", "--reviewer", "ana"]
    assert main([*command, "--detector", address]) == 0
    assert capsys.readouterr().out == (
        f"dismissed incident {door} (knife on door): a false alarm\n"
    )
    assert main(["incidents", "stats", "--source", "door", "--json", "--detector", address]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["false_alarms"], row["dismissed"], row["false_alarm_rate"]) == (1, 1, 1.0)

    assert main(["incidents", "confirm", door, "--json", "--detector", address]) == 0
    reviewed = json.loads(capsys.readouterr().out)
    assert reviewed["review"]["decision"] == "confirmed"
    assert reviewed["review"]["note"] == ""
    assert reviewed["false_alarm"] is False

    assert main(["incidents", "stats", "--source", "elsewhere", "--detector", address]) == 0
    assert capsys.readouterr().out == "no incidents\n"
    assert main(["incidents", "confirm", "nope", "--detector", address]) == 1
    assert capsys.readouterr().err == "vigil: NOT_FOUND: no incident 'nope'\n"
    assert main(["incidents", "dismiss", door, "--note", "n" * 501, "--detector", address]) == 1
    assert "INVALID_ARGUMENT: note is longer than 500 characters" in capsys.readouterr().err


def test_the_installed_cli_reviews_as_its_user(detector: DetectorServer) -> None:
    """``python -m vigil.cli`` as a user runs it: the reviewer defaults to the login name."""
    address = f"127.0.0.1:{detector.port}"
    stage_incident(detector, "gate", close=False)
    with DetectorClient(address) as client:
        (gate,) = incident_ids(client, 1)
    process = vigil("incidents", "dismiss", gate, "--json", "--detector", address)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    review = json.loads(out)["review"]
    assert review["decision"] == "dismissed"
    assert review["reviewer"] == getpass.getuser()
    process = vigil("incidents", "stats", "--since", "2000-01-01T00:00", "--detector", address)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.splitlines()[1].split() == ["gate", "knife", "-", "1", "1", "100%", "0", "1", "0"]
    process = vigil("incidents", "stats", "--since", "yesterday", "--detector", address)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "--since" in err
