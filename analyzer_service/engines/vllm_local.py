"""The ``Engine`` on vLLM's ``AsyncLLM`` in this process (the engine core runs in its children).

One event loop must own the ``AsyncLLM`` for its whole life: its output handler is a task on the
loop that first generates, and a second loop finds it dead. ``start`` and ``shutdown`` therefore
belong to the service's loop, and ``start`` builds the engine in a worker thread so that loop keeps
answering health checks during the tens of seconds a load takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib.util
import logging
import pathlib
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Literal

from analyzer_service.engine import (
    Delta,
    EngineLimits,
    GenerateRequest,
    Lifecycle,
    register,
)
from analyzer_service.engines import plugin, prompts
from analyzer_service.engines.constraints import structured_outputs
from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

Dtype = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A request as the engine receives it: rendered prompt, its token ids and decoded frames."""

    text: str
    token_ids: list[int]
    images: list[Any]  # PIL images


def load_images(paths: Sequence[pathlib.Path]) -> list[Any]:
    from PIL import Image

    images = []
    for path in paths:
        with Image.open(path) as image:
            # convert() forces the decode here, in the worker thread, not lazily in vLLM.
            images.append(image.convert("RGB"))
    return images


@register("vllm")
class LocalVllmEngine(Lifecycle):
    """Gemma 3 (or any chat model with images) served by an in-process ``AsyncLLM``.

    A Choice or Regex constraint becomes vLLM's structured outputs (a JSON schema is refused
    with InvalidInput); a request's seed and temperature override the engine's. ``priority`` goes
    to vLLM, where it counts once ``engine_args`` asks for ``scheduling_policy="priority"``.
    """

    def __init__(
        self,
        model: str,
        *,
        served_name: str | None = None,
        dtype: Dtype = "auto",
        max_model_len: int = 8192,
        max_images: int = 16,
        max_tokens: int = 1024,
        temperature: float = 0.2,
        top_p: float = 0.95,
        seed: int | None = None,
        engine_args: Mapping[str, Any] | None = None,
        sampling_args: Mapping[str, Any] | None = None,
        stat_loggers: Sequence[Callable[[Any, int], Any]] = (),
    ) -> None:
        self.model = served_name or model
        self.model_path = model
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_images = max_images
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        # Passed through to AsyncEngineArgs (enforce_eager, distributed_executor_backend, ...).
        self.engine_args = dict(engine_args or {})
        # Passed through to SamplingParams (repetition_penalty, ignore_eos for benchmarks, ...).
        self.sampling_args = dict(sampling_args or {})
        # vLLM stat logger factories, called with (VllmConfig, engine index): the loggers see the
        # stats of every engine step (tokens generated, requests finished), the ones vLLM's own
        # metrics come from; tests count what the engine really generated with one.
        self.stat_loggers = list(stat_loggers)
        self.load_s: float | None = None
        self._llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(cls, settings: AnalyzerSettings) -> LocalVllmEngine:
        if importlib.util.find_spec("vllm") is None:
            # Refusing to start beats silently running without the model that was asked for.
            raise RuntimeError(
                "VIGIL_ANALYZER_ENGINE=vllm needs vLLM: pip install 'vigil[llm]' "
                "(or unset it to run without a language model)"
            )
        return cls(
            settings.model,
            served_name=settings.served_model_name or None,
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            max_images=settings.max_images,
            max_tokens=max(settings.max_tokens, settings.chat_max_tokens),
            temperature=settings.temperature,
            top_p=settings.top_p,
        )

    async def start(self) -> None:
        if self._llm is not None:
            return
        self._loop = asyncio.get_running_loop()
        started = time.perf_counter()
        # Something vLLM imports while building keeps that call's frames alive (a stored
        # traceback), and with them the executor's future and its result: were that result the
        # engine, close() could never free it. Handed over in a list we empty, nothing is left.
        box = await asyncio.to_thread(lambda: [self._build()])
        self._llm = box.pop()
        self.load_s = time.perf_counter() - started
        log.info("vLLM engine for %s ready in %.1f s", self.model, self.load_s)

    def _build(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # vLLM loads its plugins once per process; this one may be needed before that happens.
        plugin.register()

        args = AsyncEngineArgs(
            model=self.model_path,
            served_model_name=self.model,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            limit_mm_per_prompt={"image": self.max_images},
            **self.engine_args,
        )
        return AsyncLLM.from_engine_args(args, stat_loggers=self.stat_loggers or None)

    async def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            # Stopping the engine core joins processes for seconds; keep the loop free meanwhile.
            await asyncio.to_thread(llm.shutdown)
            # Collected now, its __del__ (a second shutdown) runs while the interpreter is whole,
            # not at exit when its globals are gone and it raises.
            del llm
            gc.collect()

    def _running(self) -> Any:
        if self._llm is None:
            raise Unavailable(f"the language model {self.model} is not started")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("LocalVllmEngine used from an event loop other than its own")
        return self._llm

    def unfinished_requests(self) -> int:
        return int(self._running().get_num_unfinished_requests())

    async def prepare(self, request: GenerateRequest) -> Prepared:
        """Render the chat template and decode the frames, off the event loop."""
        llm = self._running()
        tokenizer = llm.get_tokenizer()

        def work() -> Prepared:
            text, ids = prompts.render(
                tokenizer,
                request.prompt,
                len(request.images),
                labels=request.labels,
                history=request.history,
            )
            return Prepared(text, ids, load_images(request.images))

        return await asyncio.to_thread(work)

    async def outputs(self, request: GenerateRequest) -> AsyncGenerator[Any, None]:
        """vLLM's ``RequestOutput`` deltas for a request; closing this aborts the request."""
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import (
            RequestOutputKind,
            SamplingParams,
            StructuredOutputsParams,
        )
        from vllm.v1.engine.exceptions import EngineDeadError

        llm = self._running()
        if request.max_tokens < 1:
            raise InvalidInput(f"max_tokens must be at least 1, not {request.max_tokens}")
        constrained = structured_outputs(self.model, request)
        sampling = dict(self.sampling_args)
        if constrained is not None:
            # The answer ends where its pattern does: ignoring <eos> would sample past the end.
            sampling.update(
                structured_outputs=StructuredOutputsParams(**constrained), ignore_eos=False
            )
        prepared = await self.prepare(request)
        params = SamplingParams(
            max_tokens=min(request.max_tokens, self.max_tokens),
            temperature=self.temperature if request.temperature is None else request.temperature,
            top_p=self.top_p,
            seed=self.seed if request.seed is None else request.seed,
            output_kind=RequestOutputKind.DELTA,
            **sampling,
        )
        engine_prompt: dict[str, Any] = {"prompt_token_ids": prepared.token_ids}
        if prepared.images:
            engine_prompt["multi_modal_data"] = {"image": prepared.images}
        finished = False
        # aclosing: closing this generator must close vLLM's, which is what aborts the request.
        async with contextlib.aclosing(
            llm.generate(engine_prompt, params, request.request_id, priority=request.priority)
        ) as stream:
            try:
                async for output in stream:
                    finished = bool(output.finished)
                    yield output
            except (VLLMClientError, ValueError) as exc:
                # The request's fault (too many images, prompt longer than max_model_len, ...).
                raise InvalidInput(f"{self.model} refused the request: {exc}") from exc
            except EngineDeadError as exc:
                raise Unavailable(f"the language model {self.model} has stopped") from exc
            finally:
                if not finished:
                    await llm.abort(request.request_id)

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        """Text pieces with the tokens each took; tokens without text count toward the next."""
        pending = 0
        async with contextlib.aclosing(self.outputs(request)) as stream:
            async for output in stream:
                for completion in output.outputs:
                    pending += len(completion.token_ids)
                    if completion.text:
                        yield Delta(completion.text, pending)
                        pending = 0
        if pending:
            yield Delta("", pending)

    @property
    def limits(self) -> EngineLimits:
        """The limits it was made with; what the model itself says (tokens per image, whether
        it reads images) once started."""
        if self._llm is None:
            return EngineLimits(max_model_len=self.max_model_len, max_images=self.max_images)
        config = self._llm.model_config
        # Gemma 3 declares its image tokens; a labelled frame adds the block's markers and
        # newlines and the time label. Other models leave it to the settings.
        per_image = config.hf_config.to_dict().get("mm_tokens_per_image")
        return EngineLimits(
            max_model_len=self.max_model_len,
            tokens_per_image=per_image + 8 if isinstance(per_image, int) else None,
            max_images=self.max_images,
            accepts_images=bool(config.is_multimodal_model),
        )

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def health(self) -> bool:
        llm = self._llm
        if llm is None or llm.errored:
            return False
        try:
            await llm.check_health()
        except Exception:
            return False
        return True
