"""The source-URI type: what may leave the detector never carries a credential."""

from __future__ import annotations

import pickle

import pytest

from detector_service.source_uri import SourceUri, mask


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
