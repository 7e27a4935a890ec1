"""Chat messages for a prompt with frames, shared by the in-process and HTTP engines.

Frames go with the first user turn, in time order, each preceded by its label (its time in the
video, "[01:23]") when the request has labels, then that turn's text; earlier turns of a
conversation follow as alternating user and model messages, and the request's prompt is the last
user message.
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Sequence
from typing import Any, Protocol

JsonObject = dict[str, Any]


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: list[JsonObject], **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...


def _conversation(
    prompt: str,
    media: list[JsonObject],
    history: Sequence[tuple[str, str]],
) -> list[JsonObject]:
    """Messages whose first user turn carries ``media`` (parts already labelled)."""
    turns = [*history, (prompt, None)]
    messages: list[JsonObject] = []
    for position, (user, answer) in enumerate(turns):
        content: list[JsonObject] = list(media) if position == 0 else []
        content.append({"type": "text", "text": user})
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _labelled(parts: list[JsonObject], labels: Sequence[str]) -> list[JsonObject]:
    media: list[JsonObject] = []
    for position, part in enumerate(parts):
        if position < len(labels) and labels[position]:
            media.append({"type": "text", "text": labels[position]})
        media.append(part)
    return media


def template_messages(
    prompt: str,
    frames: int,
    *,
    labels: Sequence[str] = (),
    history: Sequence[tuple[str, str]] = (),
) -> list[JsonObject]:
    """Messages for a tokenizer's chat template: one image part per frame, labelled."""
    media = _labelled([{"type": "image"} for _ in range(frames)], labels)
    return _conversation(prompt, media, history)


def render(
    tokenizer: ChatTokenizer,
    prompt: str,
    frames: int,
    *,
    labels: Sequence[str] = (),
    history: Sequence[tuple[str, str]] = (),
) -> tuple[str, list[int]]:
    """The chat-templated prompt and its token ids, ready for generation.

    The template already starts with ``<bos>``; encoding with special tokens would add a second.
    """
    text = tokenizer.apply_chat_template(
        template_messages(prompt, frames, labels=labels, history=history),
        tokenize=False,
        add_generation_prompt=True,
    )
    if not isinstance(text, str):
        raise TypeError(f"the chat template rendered {type(text).__name__}, not text")
    return text, list(tokenizer.encode(text, add_special_tokens=False))


def jpeg_data_url(path: pathlib.Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def openai_messages(
    prompt: str,
    images: Sequence[pathlib.Path],
    *,
    labels: Sequence[str] = (),
    history: Sequence[tuple[str, str]] = (),
) -> list[JsonObject]:
    """OpenAI chat messages, frames inlined as data URLs; the server renders the template."""
    parts: list[JsonObject] = [
        {"type": "image_url", "image_url": {"url": jpeg_data_url(path)}} for path in images
    ]
    return _conversation(prompt, _labelled(parts, labels), history)
