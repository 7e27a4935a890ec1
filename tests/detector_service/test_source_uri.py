"""The source-URI type: what may leave the detector never carries a credential."""

from __future__ import annotations

import pickle

import pytest

from detector_service.source_uri import SourceUri, credentials_parse, mask
from detector_service.sources import validate
from vigil.core.errors import InvalidInput
from vigil.detector.v1 import detector_service_pb2 as pb


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("rtsp://admin:hunter2@cam.local:554/s1", "rtsp://admin:***@cam.local:554/s1"),
        ("rtsp://admin:p%40ss@10.0.0.5/s1", "rtsp://admin:***@10.0.0.5/s1"),
        ("rtsp://admin:a@b@cam/s1", "rtsp://admin:***@cam/s1"),
        ("https://cam/mjpeg?token=abc123&fps=5", "https://cam/mjpeg?token=***&fps=5"),
        (
            "http://cam/v?user=u&password=pw&api_key=k1",
            "http://cam/v?user=u&password=***&api_key=***",
        ),
        ("https://s3/x.mp4?X-Amz-Signature=deadbeef", "https://s3/x.mp4?X-Amz-Signature=***"),
        ("rtsp://cam.local/s1", "rtsp://cam.local/s1"),
        ("rtsp://viewer@cam.local/s1", "rtsp://viewer@cam.local/s1"),
        ("/videos/lobby.mp4", "/videos/lobby.mp4"),
        ("0", "0"),
    ],
)
def test_masked_forms(raw: str, masked: str) -> None:
    uri = SourceUri(raw)
    assert uri.masked == masked == str(uri) == mask(raw)
    assert uri.reveal() == raw
    assert masked in repr(uri)


def test_no_printable_form_holds_the_password() -> None:
    uri = SourceUri("rtsp://admin:s3cr3t-pw@cam/s1?key=k3y-v4lue")
    for text in (str(uri), repr(uri), f"{uri}", f"{uri!r}", format(uri)):
        assert "s3cr3t-pw" not in text
        assert "k3y-v4lue" not in text
    with pytest.raises(TypeError):
        pickle.dumps(uri)


def test_redact_scrubs_library_text() -> None:
    uri = SourceUri("rtsp://admin:p%40ss-w0rd@cam/s1?token=t0k3n")
    text = (
        "[rtsp @ 0x55] method DESCRIBE failed for rtsp://admin:p%40ss-w0rd@cam/s1?token=t0k3n;"
        " auth p@ss-w0rd; token t0k3n; other rtsp://x:y@z/"
    )
    clean = uri.redact(text)
    for secret in ("p%40ss-w0rd", "p@ss-w0rd", "t0k3n", "x:y@"):
        assert secret not in clean
    assert "rtsp://admin:***@cam/s1?token=***" in clean


def test_unparsable_url_is_masked_by_pattern() -> None:
    uri = SourceUri("rtsp://admin:hunter2@[bad-host/s1")
    assert "hunter2" not in uri.masked
    assert uri.reveal().endswith("[bad-host/s1")


@pytest.mark.parametrize(
    "raw",
    [
        "rtsp://admin:pa#ss@cam/s",
        "rtsp://admin:pa?ss@cam/s",
        "rtsp://admin:pa/ss@cam/s",
        "rtsp://admin:12/pa34@cam/s",
    ],
)
def test_a_password_a_parser_cannot_find_is_refused_not_shown(raw: str) -> None:
    # The '@' falls outside the authority: urlsplit sees no password, so nothing would be masked.
    assert not credentials_parse(raw)
    spec = pb.SourceSpec(id="cam", kind=pb.SOURCE_KIND_STREAM, uri=raw)
    with pytest.raises(InvalidInput) as refused:
        validate(spec)
    assert "pa" + raw.split("pa")[1].split("@")[0] not in refused.value.message


@pytest.mark.parametrize(
    "raw",
    ["rtsp://admin:pa%23ss@cam/s", "rtsp://cam/s?next=a@b", "rtsp://cam/s", "/video.mp4", "0"],
)
def test_readable_uris_pass(raw: str) -> None:
    assert credentials_parse(raw)
