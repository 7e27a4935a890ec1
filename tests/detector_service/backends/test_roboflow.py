"""The Roboflow backend against a local fake that speaks Roboflow's wire format."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from detector_service.backends import BackendUnavailable, create
from detector_service.backends.roboflow import RoboflowBackend, RoboflowError, scrub
from detector_service.settings import DetectorSettings
from tests.detector_service.backends.fake_roboflow import MODEL_ID, FakeRoboflow, serve

# A key no test would type by accident: seeing it anywhere in output is a leak.
CANARY = "rf_CANARY_9f3b2c7d1e"

GUN = {
    "x": 100.0,
    "y": 50.0,
    "width": 40.0,
    "height": 20.0,
    "confidence": 0.91,
    "class": "gun",
    "class_id": 0,
}
# Centre near the right edge: its corners reach past the 160-pixel-wide frame.
PERSON = {**GUN, "x": 150.0, "y": 60.0, "width": 40.0, "height": 60.0, "class": "person"}
PERSON["class_id"] = 1
FAINT = {**GUN, "confidence": 0.1, "class": "knife", "class_id": 2}


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Settings read the process environment and ./.env; neither may supply a real key here.
    for name in ("ROBOFLOW_API_KEY", "VIGIL_DETECTOR_ROBOFLOW_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fake() -> Iterator[FakeRoboflow]:
    with serve(FakeRoboflow(predictions=[GUN, PERSON, FAINT])) as running:
        yield running


@pytest.fixture
def caplog_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def frame(bgr: tuple[int, int, int] = (40, 90, 200), w: int = 160, h: int = 120) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = bgr
    image[10:30, 20:60] = (255, 255, 255)  # some structure so the decoded JPEG can be compared
    return image


def settings(url: str, **overrides: Any) -> DetectorSettings:
    values: dict[str, Any] = {
        "backend": "roboflow",
        "roboflow_api_url": url,
        "roboflow_model_id": MODEL_ID,
        "roboflow_api_key": CANARY,
        "confidence": 0.3,
        "roboflow_timeout_s": 10.0,
    }
    values.update(overrides)
    return DetectorSettings(**values)


def assert_no_canary(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for text in (*texts, caplog.text, *(r.getMessage() for r in caplog.records)):
        assert CANARY not in text
        assert CANARY[:8] not in text  # not even a prefix that narrows the key down


def test_hosted_v0_posts_base64_jpeg_with_key_and_confidence(
    fake: FakeRoboflow, caplog_all: pytest.LogCaptureFixture
) -> None:
    # inference-sdk speaks v0 only to URLs starting with Roboflow's hosted hosts; the mode
    # setting makes it speak v0 to the fake, through the SDK's own request code.
    backend = create(settings(fake.url, roboflow_api_mode="v0"))
    image = frame()
    (found,) = backend.detect([image])

    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == f"/{MODEL_ID}"
    assert request.query["api_key"] == CANARY
    assert float(request.query["confidence"]) == pytest.approx(0.3)
    assert float(request.query["overlap"]) == pytest.approx(0.45)
    assert request.query["disable_active_learning"].lower() == "true"
    sent = cv2.imdecode(np.frombuffer(base64.b64decode(request.body), np.uint8), cv2.IMREAD_COLOR)
    assert sent is not None
    assert sent.shape == image.shape
    assert np.abs(sent.astype(int) - image.astype(int)).mean() < 3  # the same frame, as JPEG

    assert found.model == f"roboflow:{MODEL_ID}"
    assert found.class_name == ("gun", "person")  # the 0.1 knife is under the threshold
    np.testing.assert_allclose(found.xyxy[0], [80, 40, 120, 60])  # centre -> corners
    np.testing.assert_allclose(found.xyxy[1], [130, 30, 160, 90])  # clipped to the 160 px frame
    assert found.class_id.tolist() == [0, 1]
    assert_no_canary(caplog_all, repr(backend))


def test_self_hosted_v1_flow_registry_add_infer(
    fake: FakeRoboflow, caplog_all: pytest.LogCaptureFixture
) -> None:
    backend = create(settings(fake.url))  # a non-Roboflow URL: v1
    images = [frame((0, 0, 255)), frame((255, 0, 0), w=200, h=100)]
    found = backend.detect(images)

    assert [r.path for r in fake.requests[:2]] == ["/model/registry", "/model/add"]
    assert fake.requests[0].query["api_key"] == CANARY
    assert fake.requests[1].json() == {"model_id": MODEL_ID, "api_key": CANARY}
    infers = fake.routes("infer")
    assert len(infers) == 2  # one request per frame, both of the batch
    body = infers[0].json()
    assert body["model_id"] == MODEL_ID
    assert body["api_key"] == CANARY
    assert body["confidence"] == pytest.approx(0.3)
    assert body["iou_threshold"] == pytest.approx(0.45)
    assert body["image"]["type"] == "base64"
    assert sorted(f.shape for f in fake.frames) == sorted(i.shape for i in images)

    assert [d.class_name for d in found] == [("gun", "person")] * 2
    np.testing.assert_allclose(found[0].xyxy, [[80, 40, 120, 60], [130, 30, 160, 90]])
    # The wider second frame does not clip the person.
    np.testing.assert_allclose(found[1].xyxy, [[80, 40, 120, 60], [130, 30, 170, 90]])

    # The model is loaded now: the next batch checks the registry and goes straight to inference.
    fake.requests.clear()
    backend.detect([images[0]])
    assert [r.path for r in fake.requests] == ["/model/registry", "/infer/object_detection"]
    assert_no_canary(caplog_all)


def test_header_transport_keeps_key_out_of_urls_and_bodies(fake: FakeRoboflow) -> None:
    backend = create(settings(fake.url, roboflow_api_key_transport="header"))
    backend.detect([frame()])
    assert fake.requests
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {CANARY}"
        assert "api_key" not in request.query
        assert CANARY.encode() not in request.body


@pytest.mark.parametrize(("route", "status"), [("v0", 401), ("v0", 500), ("registry", 401)])
def test_http_errors_are_clean_and_keyless(
    fake: FakeRoboflow, caplog_all: pytest.LogCaptureFixture, route: str, status: int
) -> None:
    fake.failures[route] = [status]
    mode = "v0" if route == "v0" else "v1"
    backend = create(settings(fake.url, roboflow_api_mode=mode))
    with pytest.raises(RoboflowError) as raised:
        backend.detect([frame()])
    assert raised.value.status_code == status
    assert f"HTTP {status}" in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert len(fake.requests) == 1  # not retried
    assert_no_canary(caplog_all, str(raised.value), repr(raised.value))


def test_503_is_retried_then_succeeds(
    fake: FakeRoboflow, caplog_all: pytest.LogCaptureFixture
) -> None:
    fake.failures["v0"] = [503, 503]
    backend = create(settings(fake.url, roboflow_api_mode="v0"))
    (found,) = backend.detect([frame()])
    # backoff's default full jitter makes inference-sdk's "1 s" a random 0-1 s wait.
    assert len(fake.routes("v0")) == 3
    assert found.class_name == ("gun", "person")
    assert_no_canary(caplog_all)


def test_unreachable_server_error_is_keyless(caplog_all: pytest.LogCaptureFixture) -> None:
    with serve(FakeRoboflow()) as gone:
        url = gone.url  # a port that was just closed
    backend = create(settings(url, roboflow_api_mode="v0"))
    with pytest.raises(RoboflowError, match="Connect") as raised:
        backend.detect([frame()])  # after inference-sdk's three tries
    assert_no_canary(caplog_all, str(raised.value))


def test_a_hung_server_times_out(fake: FakeRoboflow) -> None:
    fake.delay_s = 3.0
    backend = create(settings(fake.url, roboflow_api_mode="v0", roboflow_timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(RoboflowError, match=r"no answer within 0\.3 s"):
        backend.detect([frame()])
    assert time.monotonic() - started < 2.0


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(BackendUnavailable, match="VIGIL_DETECTOR_ROBOFLOW_API_KEY"):
        create(DetectorSettings(backend="roboflow", roboflow_model_id=MODEL_ID))


def test_missing_model_names_the_variable() -> None:
    with pytest.raises(BackendUnavailable, match="VIGIL_DETECTOR_ROBOFLOW_MODEL_ID") as raised:
        create(DetectorSettings(backend="roboflow", roboflow_api_key=CANARY))
    assert CANARY not in str(raised.value)


def test_v0_needs_project_and_version() -> None:
    with pytest.raises(BackendUnavailable, match="project/version"):
        create(settings("https://detect.roboflow.com", roboflow_model_id="weapons"))


def test_key_from_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    (tmp_path / ".env").write_text(f"ROBOFLOW_API_KEY={CANARY}-dotenv\n")
    key = DetectorSettings().roboflow_api_key
    assert key is not None
    assert key.get_secret_value() == f"{CANARY}-dotenv"
    monkeypatch.setenv("ROBOFLOW_API_KEY", f"{CANARY}-plain")
    assert (
        DetectorSettings().roboflow_api_key
        == DetectorSettings(roboflow_api_key=f"{CANARY}-plain").roboflow_api_key
    )
    monkeypatch.setenv("VIGIL_DETECTOR_ROBOFLOW_API_KEY", CANARY)  # the prefixed name wins
    key = DetectorSettings().roboflow_api_key
    assert key is not None
    assert key.get_secret_value() == CANARY
    assert CANARY not in repr(DetectorSettings())


def test_hosted_url_selects_v0_and_backend_repr_is_keyless() -> None:
    backend = RoboflowBackend(settings("https://detect.roboflow.com"))  # constructs, sends nothing
    assert backend.api_version == "v0"
    assert RoboflowBackend(settings("http://127.0.0.1:9001")).api_version == "v1"
    assert backend.model_name == f"roboflow:{MODEL_ID}"
    assert backend.max_batch == 4
    assert CANARY not in repr(backend)
    assert CANARY not in repr(vars(backend).get("_key"))


def test_scrub_covers_every_wire_form() -> None:
    text = (
        f'url=/a/1?api_key={CANARY}&confidence=0.3 body={{"api_key": "other"}} '
        "Authorization: Bearer abc.def api_key=ab***yz"
    )
    cleaned = scrub(text, DetectorSettings(roboflow_api_key=CANARY).roboflow_api_key)
    assert CANARY not in cleaned
    assert "other" not in cleaned
    assert "abc.def" not in cleaned
    assert "ab***yz" not in cleaned
    assert "confidence=0.3" in cleaned
