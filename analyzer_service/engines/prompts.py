"""Chat messages for a prompt with frames, shared by the in-process and HTTP engines.

Images go before the text, in frame order, so the labels in the prompt ("Frame 1 [00:02].") read
after the frames they describe, as Gemma 3's model card recommends for multi-image prompts.
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


def template_messages(prompt: str, frames: int) -> list[JsonObject]:
    """Messages for a tokenizer's chat template: one image part per frame, then the text."""
    content: list[JsonObject] = [{"type": "image"} for _ in range(frames)]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]


def render(tokenizer: ChatTokenizer, prompt: str, frames: int) -> tuple[str, list[int]]:
    """The chat-templated prompt and its token ids, ready for generation.

    The template already starts with ``<bos>``; encoding with special tokens would add a second.
    """
    text = tokenizer.apply_chat_template(
        template_messages(prompt, frames), tokenize=False, add_generation_prompt=True
    )
    if not isinstance(text, str):
        raise TypeError(f"the chat template rendered {type(text).__name__}, not text")
    return text, list(tokenizer.encode(text, add_special_tokens=False))


def jpeg_data_url(path: pathlib.Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def openai_messages(prompt: str, images: Sequence[pathlib.Path]) -> list[JsonObject]:
    """OpenAI chat messages, frames inlined as data URLs; the server renders the template."""
    content: list[JsonObject] = [
        {"type": "image_url", "image_url": {"url": jpeg_data_url(path)}} for path in images
    ]
    content.append({"type": "text", "text": prompt})
    return [{"role": "user", "content": content}]
