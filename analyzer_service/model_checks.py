"""What alert verification and watch-rule checks share: their inputs checked, their pictures
handed to the engine, and one constrained answer from the model, validated.

Both ask the model for one line in a fixed form (``Regex``): fields chosen from a few words and
fields of bounded text. vLLM's structured outputs keep the answer in that form whatever the model
(the tiny random test model included), and every generated token carries at least one character
of it, so a ``max_tokens`` of the form's longest length can never cut an answer short. The
answer is parsed and validated all the same: one that fails is an error (UNAVAILABLE, retried by
callers), never a guessed verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import pathlib
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence

from analyzer_service.engine import GenerateRequest, Regex
from analyzer_service.generation import Model
from analyzer_service.settings import AnalyzerSettings
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import FailedPrecondition, InvalidInput, TooLarge, Unavailable

# Ids (incident, source, rule) and picture labels, as they go into prompts, logs and metrics.
MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 100
JPEG_MAGIC = b"\xff\xd8\xff"
# The highest seed vLLM takes (a signed 64-bit integer).
MAX_SEED = 2**63 - 1
MAX_TEMPERATURE = 2.0

# Text the model writes in a bounded field: plain words and light punctuation, never the ";"
# that separates fields. Starts with a letter or digit, so it is never empty or blank.
_TEXT_CHARS = "A-Za-z0-9 ,.'-"


def bounded_text(longest: int) -> str:
    """The pattern of a free-text field of 1 to ``longest`` characters (no groups)."""
    return f"[A-Za-z0-9][{_TEXT_CHARS}]{{0,{longest - 1}}}"


@dataclasses.dataclass(frozen=True)
class AnswerForm:
    """One line of fields: ``pattern`` goes to the engine, ``parser`` (the same with named groups)
    reads the answer back, ``longest`` is its greatest length in characters."""

    pattern: str
    parser: re.Pattern[str]
    longest: int

    def parse(self, model: str, text: str) -> re.Match[str]:
        match = self.parser.fullmatch(text)
        if match is None:
            raise Unavailable(f"{model} gave an answer out of its form ({text[:80]!r}); ask again")
        return match


def check_id(what: str, value: str, *, required: bool = True) -> str:
    if required and not value:
        raise InvalidInput(f"{what} is missing", field=what)
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(f"{what} is longer than {MAX_ID_CHARS} characters", field=what)
    if not value.isprintable():
        raise InvalidInput(f"{what} has control characters", field=what)
    return value


def check_text(what: str, value: str, longest: int) -> str:
    """Text that goes into a prompt: present, bounded, one line."""
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} is empty", field=what)
    if len(value) > longest:
        raise InvalidInput(f"{what} is longer than {longest} characters", field=what)
    if not value.isprintable():
        raise InvalidInput(f"{what} has line breaks or control characters", field=what)
    return value


def _decoded(jpeg: bytes) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        if image.format != "JPEG":
            raise ValueError(f"a {image.format} image")
        image.load()


async def check_pictures(
    pictures: Sequence[cpb.Picture], settings: AnalyzerSettings, model: Model
) -> None:
    """At least one, no more than the settings and the model allow, each a whole JPEG."""
    limits = model.limits()
    if not limits.accepts_images:
        raise FailedPrecondition(f"the model {model.name} reads no images")
    if not pictures:
        raise InvalidInput("no pictures: give at least one JPEG", field="pictures")
    most = min(settings.max_check_pictures, limits.max_images)
    if len(pictures) > most:
        raise InvalidInput(
            f"{len(pictures)} pictures; at most {most} go to the model", field="pictures"
        )
    for n, picture in enumerate(pictures):
        where = f"pictures[{n}]"
        if len(picture.label) > MAX_LABEL_CHARS:
            raise InvalidInput(
                f"the label of {where} is longer than {MAX_LABEL_CHARS} characters", field=where
            )
        if not picture.label.isprintable():
            raise InvalidInput(f"the label of {where} has control characters", field=where)
        if len(picture.jpeg) > settings.max_picture_bytes:
            raise TooLarge(
                f"{where} is larger than {settings.max_picture_bytes} bytes", field=where
            )
        if not picture.jpeg.startswith(JPEG_MAGIC):
            raise InvalidInput(f"{where} is not a JPEG", field=where)
        try:
            # Decoding is milliseconds; it keeps a broken file from failing inside the engine.
            await asyncio.to_thread(_decoded, picture.jpeg)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(f"{where} is not a readable JPEG: {exc}", field=where) from None


def sampling_of(sampling: cpb.SamplingSettings) -> tuple[float | None, int | None]:
    """The request's (temperature, seed); None keeps the engine's default."""
    temperature = sampling.temperature if sampling.HasField("temperature") else None
    seed = sampling.seed if sampling.HasField("seed") else None
    if temperature is not None and not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidInput(
            f"temperature must be between 0 and {MAX_TEMPERATURE}", field="sampling.temperature"
        )
    if seed is not None and seed > MAX_SEED:
        raise InvalidInput(f"seed must be at most {MAX_SEED}", field="sampling.seed")
    return temperature, seed


@contextlib.contextmanager
def picture_files(
    pictures: Sequence[cpb.Picture], parent: pathlib.Path
) -> Iterator[list[pathlib.Path]]:
    """The pictures as files (engines take JPEG paths), removed afterwards."""
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pictures-", dir=parent) as folder:
        paths = []
        for n, picture in enumerate(pictures):
            path = pathlib.Path(folder) / f"{n}.jpg"
            path.write_bytes(picture.jpeg)
            paths.append(path)
        yield paths


@dataclasses.dataclass(frozen=True)
class Question:
    """One constrained question about pictures, as the service asks it."""

    kind: str  # "verification" or "watch_rule": the request id's prefix and the metrics' kind
    prompt: str
    pictures: Sequence[cpb.Picture]
    form: AnswerForm
    priority: int
    fair_key: str
    sampling: cpb.SamplingSettings


@dataclasses.dataclass(frozen=True)
class Answer:
    match: re.Match[str]
    model: str
    seconds: float


async def ask(model: Model, settings: AnalyzerSettings, question: Question) -> Answer:
    """The model's answer to ``question``, parsed by its form."""
    temperature, seed = sampling_of(question.sampling)
    with picture_files(question.pictures, settings.data_dir / "pictures") as files:
        request = GenerateRequest(
            request_id=f"{question.kind}-{uuid.uuid4().hex[:12]}",
            prompt=question.prompt,
            images=files,
            labels=[picture.label for picture in question.pictures],
            # Every token carries a character of the answer: the longest answer always fits.
            max_tokens=question.form.longest + 1,
            constraint=Regex(question.form.pattern),
            priority=question.priority,
            fair_key=question.fair_key,
            temperature=temperature,
            seed=seed,
        )
        started = time.monotonic()
        async with contextlib.aclosing(model.generate(request, kind=question.kind)) as stream:
            parts = [delta.text async for delta in stream]
        seconds = time.monotonic() - started
    return Answer(question.form.parse(model.name, "".join(parts)), model.name, seconds)
