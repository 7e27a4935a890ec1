"""The ``Engine`` on a vLLM OpenAI-compatible server, over HTTP.

Generation streams ``/v1/chat/completions`` as server-sent events; closing the stream is the
abort, since vLLM aborts a request whose client disconnects. Error messages carry the server's
explanation and status but never the API key, which lives only in the client's headers.

The engine takes a list of endpoints so that several servers can stand behind it later (which
one a request goes to, what health means then); today it is given exactly one. Constrained
answers are refused for now (InvalidInput); a non-zero ``priority`` goes to the server, which
honours it when started with ``--scheduling-policy priority``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx

from analyzer_service.engine import (
    Delta,
    EngineLimits,
    GenerateRequest,
    Lifecycle,
    refuse_constraint,
    register,
)
from analyzer_service.engines import prompts
from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import FailedPrecondition, InvalidInput, Unavailable, VigilError

# Server replies longer than this are cut in error messages; they reach users.
_MAX_DETAIL = 500


def api_root(base_url: str) -> str:
    """``http://host:8000``, ``…:8000/`` and ``…:8000/v1`` all name the same server."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
    else:
        error = data.get("error", data) if isinstance(data, dict) else data
        text = str(error.get("message", error) if isinstance(error, dict) else error)
    return text[:_MAX_DETAIL] or "no details"


@register("vllm-http")
class RemoteVllmEngine(Lifecycle):
    """A model served by ``python -m vllm.entrypoints.openai.api_server`` (or ``vllm serve``)."""

    # The server's limits are not asked for: the service's settings apply.
    limits = EngineLimits()

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        *,
        api_key: str | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.2,
        top_p: float = 0.95,
        connect_timeout_s: float = 5.0,
        # Longest silence between two streamed chunks; the first comes after the whole prefill.
        read_timeout_s: float = 120.0,
        health_timeout_s: float = 5.0,
        extra_body: Mapping[str, Any] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        endpoints = [base_url] if isinstance(base_url, str) else list(base_url)
        if len(endpoints) != 1:
            raise ValueError(f"the vLLM HTTP engine takes one server for now, not {len(endpoints)}")
        self.model = model
        self.base_url = api_root(endpoints[0])
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.health_timeout_s = health_timeout_s
        # vLLM's extra sampling fields (repetition_penalty, ignore_eos for benchmarks, ...).
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        self._streams: dict[str, httpx.Response] = {}
        self._aborted: set[str] = set()

    def __repr__(self) -> str:
        return f"RemoteVllmEngine({self.base_url!r}, {self.model!r})"

    @classmethod
    def from_settings(cls, settings: AnalyzerSettings) -> RemoteVllmEngine:
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        return cls(
            settings.vllm_url,
            settings.model,
            api_key=key,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            connect_timeout_s=min(settings.request_timeout_s, 10.0),
            read_timeout_s=settings.request_timeout_s,
            health_timeout_s=settings.engine_health_timeout_s,
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _body(self, request: GenerateRequest, messages: list[prompts.JsonObject]) -> dict[str, Any]:
        # Sent only when asked, so that requests without one stay as they were.
        priority = {"priority": request.priority} if request.priority else {}
        return {
            **priority,
            **self.extra_body,
            "model": self.model,
            "messages": messages,
            "max_tokens": min(request.max_tokens, self.max_tokens),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            # vLLM uses it in its logs, which ties them to the job.
            "request_id": request.request_id,
        }

    def _http_error(self, status: int, body: bytes) -> VigilError:
        what = f"the vLLM server at {self.base_url} answered HTTP {status}: {_detail(body)}"
        if status in (401, 403):
            return FailedPrecondition(f"{what} (check the API key)")
        if status in (400, 404, 413, 422):
            return InvalidInput(what)
        return Unavailable(what)

    async def chunks(self, request: GenerateRequest) -> AsyncGenerator[dict[str, Any], None]:
        """The server's streamed ``chat.completion.chunk`` objects; closing this aborts."""
        if request.max_tokens < 1:
            raise InvalidInput(f"max_tokens must be at least 1, not {request.max_tokens}")
        refuse_constraint(self.model, request)
        # Reading and base64-encoding frames is milliseconds each; keep it off the loop anyway.
        messages = await asyncio.to_thread(
            functools.partial(
                prompts.openai_messages,
                request.prompt,
                request.images,
                labels=request.labels,
                history=request.history,
            )
        )
        body = self._body(request, messages)
        rid = request.request_id
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise self._http_error(response.status_code, await response.aread())
                self._streams[rid] = response
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:  # vLLM reports errors after the 200 inside the stream
                        raise Unavailable(
                            f"{self.model} failed mid-stream: {_detail(data.encode())}"
                        )
                    yield chunk
        except (httpx.StreamError, httpx.ReadError, httpx.RemoteProtocolError):
            if rid in self._aborted:
                return  # abort() closed the stream under us: that is the expected end
            raise Unavailable(f"the vLLM server at {self.base_url} dropped the stream") from None
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the vLLM server at {self.base_url} timed out ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            raise Unavailable(
                f"the vLLM server at {self.base_url} is unreachable ({type(exc).__name__})"
            ) from None
        finally:
            self._streams.pop(rid, None)
            self._aborted.discard(rid)

    async def deltas(self, request: GenerateRequest) -> AsyncGenerator[Delta, None]:
        """Text pieces with their tokens: one a chunk (vLLM streams a token a chunk), set right
        by the server's usage report at the end."""
        counted = 0
        async with contextlib.aclosing(self.chunks(request)) as stream:
            async for chunk in stream:
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        counted += 1
                        yield Delta(text, 1)
                usage = chunk.get("usage") or {}
                total = usage.get("completion_tokens")
                if isinstance(total, int) and total > counted:
                    yield Delta("", total - counted)
                    counted = total

    async def abort(self, request_id: str) -> None:
        response = self._streams.get(request_id)
        if response is not None:
            self._aborted.add(request_id)
            await response.aclose()

    async def health(self) -> bool:
        try:
            response = await self._client.get("/health", timeout=self.health_timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
