"""Prompt building and URL handling, without an engine."""

from __future__ import annotations

import base64
import pathlib

from analyzer_service.engines import prompts
from analyzer_service.engines.vllm_remote import api_root


def test_api_root_accepts_the_usual_spellings() -> None:
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"):
        assert api_root(url) == "http://h:8000"


def test_template_messages_put_one_image_per_frame_before_the_text() -> None:
    (message,) = prompts.template_messages("Describe.", 3)
    assert message["role"] == "user"
    assert [part["type"] for part in message["content"]] == ["image"] * 3 + ["text"]
    assert message["content"][-1]["text"] == "Describe."


def test_openai_messages_inline_the_jpegs_in_order(tmp_path: pathlib.Path) -> None:
    paths = []
    for n in range(2):
        path = tmp_path / f"{n}.jpg"
        path.write_bytes(b"\xff\xd8jpeg" + bytes([n]))
        paths.append(path)
    (message,) = prompts.openai_messages("Describe.", paths)
    parts = message["content"]
    assert [part["type"] for part in parts] == ["image_url", "image_url", "text"]
    for n, part in enumerate(parts[:2]):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == b"\xff\xd8jpeg" + bytes([n])
