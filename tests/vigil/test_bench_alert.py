"""``vigil bench alert``'s own parts: percentiles, appearances read from frames, incidents matched
to them, the scripted scenes and the webhook receiver. The whole run (an engine load of minutes)
is the benchmark's, not the suite's."""

from __future__ import annotations

import pathlib
import random

import cv2
import httpx
import numpy as np
import pytest

from detector_service.incidents.webhook import Webhook
from detector_service.watch_rule_spec import validate_watch_rules
from vigil.bench import REGISTRY, alert
from vigil.bench.alert_figures import Opened, match, onsets, percentile
from vigil.bench.rules import rules_for
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.devtools.knife_model import NAMES


def test_registered() -> None:
    assert "alert" in REGISTRY


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(n) for n in range(1, 101)], 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    values = [random.Random(n).uniform(0, 10) for n in range(37)]
    for q in (0, 13, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_onsets_skip_a_run_already_in_view() -> None:
    shows = [True, True, False, False, True, True, False, True]
    frames = [(float(n), s) for n, s in enumerate(shows)]
    assert onsets(frames) == [4.0, 7.0]
    assert onsets([]) == []


def test_incidents_match_the_last_appearance_before_they_opened() -> None:
    seen = {"a": [10.0, 16.0, 22.0], "b": [11.0]}
    opened = [
        Opened("a1", "a", 10.3, 10.4),
        Opened("a2", "a", 16.0, 16.2),  # opened on the appearance's own frame
        Opened("a3", "a", 16.9, 17.0),  # a second incident of one appearance: left out
        Opened("a4", "a", 30.0, 30.1),  # the appearance came too long before: not seen
        Opened("b1", "b", 11.5, 11.6),
        Opened("b0", "b", 9.0, 9.1),  # before any appearance seen
        Opened("c1", "c", 5.0, 5.1),  # a source never watched
    ]
    assert match(opened, seen, longest_s=2.0) == {"a1": 10.0, "a2": 16.0, "b1": 11.0}


def test_the_scenes_show_the_knife_in_turn(tmp_path: pathlib.Path) -> None:
    paths = alert.write_scenes(tmp_path, 2)
    assert sorted(paths) == ["cam0", "cam1"]
    visible = round(alert.VISIBLE_S * alert.FPS)
    shown: dict[str, list[bool]] = {}
    for source_id, path in paths.items():
        assert path.stat().st_mode & 0o777 == 0o600
        capture = cv2.VideoCapture(str(path))
        shown[source_id] = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            shown[source_id].append(alert.shows_knife(jpeg))
        capture.release()
    loop = round((alert.VISIBLE_S + alert.ABSENT_S) * alert.FPS)
    assert shown["cam0"] == [n < visible for n in range(loop)]
    # The second source starts half a loop later: the knife comes back at its end.
    half = loop // 2
    assert shown["cam1"] == [(n + half) % loop < visible for n in range(loop)]


def test_the_receiver_reads_what_the_detector_posts() -> None:
    event = pb.StreamIncidentsResponse(type=pb.INCIDENT_EVENT_TYPE_OPENED)
    event.incident.id = "i1"
    event.incident.source_id = "cam0"
    event.incident.class_name = "knife"
    event.incident.opened_at.FromNanoseconds(1_700_000_000_250_000_000)
    # A watch rule's incident (of the rule's kind) is no knife seen: left out.
    rule = pb.StreamIncidentsResponse()
    rule.CopyFrom(event)
    rule.incident.id, rule.incident.class_name = "i2", "fence"
    with alert.Receiver() as receiver:
        for posted in (event, rule):
            response = httpx.post(receiver.url, content=Webhook.body(posted))
            assert response.status_code == 200
        assert len(receiver.of_type(alert.OPENED)) == 2
        (opened,) = alert.opened_events(receiver)
    assert (opened.incident_id, opened.source_id) == ("i1", "cam0")
    assert opened.opened_at == pytest.approx(1_700_000_000.25)
    assert receiver.of_type(alert.VERIFIED) == []


def test_rules_ask_only_for_classes_the_knife_model_reports() -> None:
    rules = rules_for(4, 100)[0]
    adapted = alert.for_knife_model(rules)
    assert [r.id for r in adapted] == [r.id for r in rules]
    assert [r.condition for r in adapted] == [r.condition for r in rules]
    assert {tuple(r.filter.classes) for r in rules} == {("person",), ("car", "truck"), ()}
    assert {tuple(r.filter.classes) for r in adapted} == {("person",), ()}
    # The rules themselves are left as they were.
    assert any(tuple(r.filter.classes) == ("car", "truck") for r in rules)
    validate_watch_rules(pb.SourceSpec(id="cam0", watch_rules=adapted), set(NAMES.values()))
