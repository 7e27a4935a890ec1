"""The ``Engine`` on a vLLM OpenAI-compatible server, over HTTP.

Generation streams ``/v1/chat/completions`` as server-sent events; closing the stream is the
abort, since vLLM aborts a request whose client disconnects. Error messages carry the server's
explanation and status but never the API key, which lives only in the client's headers.

Several servers may stand behind one engine (``vllm_url`` lists them, comma-separated): each
request goes to the one up with the fewest requests outstanding (``engines.endpoints``). A server
that refuses the connection, answers 5xx or times out is marked down with backoff and the request
goes to the next, as long as nothing has been streamed yet; once text has streamed, a failure
ends the request with an error rather than a second answer from elsewhere. The engine is healthy
while at least one server is. A Choice or Regex constraint goes as vLLM's ``structured_outputs``
field (a JSON schema is refused with InvalidInput), a request's seed and temperature as the
OpenAI fields; a non-zero ``priority`` goes to the server, which honours it when started with
``--scheduling-policy priority``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import httpx

from analyzer_service.engine import (
    Delta,
    EngineLimits,
    GenerateRequest,
    Lifecycle,
    register,
)
from analyzer_service.engines import prompts
from analyzer_service.engines.constraints import structured_outputs
from analyzer_service.engines.endpoints import Endpoint, Endpoints
from analyzer_service.settings import AnalyzerSettings
from vigil.core.errors import FailedPrecondition, InvalidInput, Unavailable, VigilError

log = logging.getLogger(__name__)

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


def server_urls(setting: str) -> list[str]:
    """The servers ``vllm_url`` names: one URL, or several separated by commas."""
    return [url.strip() for url in setting.split(",") if url.strip()]


def _has_text(chunk: dict[str, Any]) -> bool:
    """Whether a chunk carries generated text (the first carries only the role)."""
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or ())


class _ServerFailed(Exception):
    """A server failed a request in a way another server may not (refused, 5xx, timed out,
    dropped): ``error`` is what the user sees if no other server takes it."""

    def __init__(self, error: VigilError) -> None:
        super().__init__(error.message)
        self.error = error


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
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.model = model
        self.endpoints = Endpoints([api_root(url) for url in urls])
        self.base_urls = [endpoint.url for endpoint in self.endpoints.all]
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.health_timeout_s = health_timeout_s
        # vLLM's extra sampling fields (repetition_penalty, ignore_eos for benchmarks, ...).
        self.extra_body = dict(extra_body or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        self._streams: dict[str, httpx.Response] = {}
        self._aborted: set[str] = set()
        self._up = len(self.endpoints)

    def __repr__(self) -> str:
        where = self.base_urls[0] if len(self.base_urls) == 1 else self.base_urls
        return f"RemoteVllmEngine({where!r}, {self.model!r})"

    @classmethod
    def from_settings(cls, settings: AnalyzerSettings) -> RemoteVllmEngine:
        key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
        return cls(
            server_urls(settings.vllm_url),
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
        # Sent only when asked, so that requests without them stay as they were.
        asked: dict[str, Any] = {}
        if request.priority:
            asked["priority"] = request.priority
        if request.seed is not None:
            asked["seed"] = request.seed
        constrained = structured_outputs(self.model, request)
        if constrained is not None:
            # The answer ends where its pattern does: ignoring <eos> would sample past the end.
            asked.update(structured_outputs=constrained, ignore_eos=False)
        return {
            **self.extra_body,
            **asked,
            "model": self.model,
            "messages": messages,
            "max_tokens": min(request.max_tokens, self.max_tokens),
            "temperature": self.temperature if request.temperature is None else request.temperature,
            "top_p": self.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            # vLLM uses it in its logs, which ties them to the job.
            "request_id": request.request_id,
        }

    @staticmethod
    def _http_error(url: str, status: int, body: bytes) -> VigilError | _ServerFailed:
        what = f"the vLLM server at {url} answered HTTP {status}: {_detail(body)}"
        if status in (401, 403):
            return FailedPrecondition(f"{what} (check the API key)")
        if status in (400, 404, 413, 422):
            return InvalidInput(what)
        return _ServerFailed(Unavailable(what))

    async def chunks(self, request: GenerateRequest) -> AsyncGenerator[dict[str, Any], None]:
        """The server's streamed ``chat.completion.chunk`` objects; closing this aborts."""
        if request.max_tokens < 1:
            raise InvalidInput(f"max_tokens must be at least 1, not {request.max_tokens}")
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
        failures: list[VigilError] = []
        try:
            for endpoint in self.endpoints.candidates():
                streamed = False
                endpoint.outstanding += 1
                try:
                    async with contextlib.aclosing(self._stream(endpoint, body, rid)) as stream:
                        async for chunk in stream:
                            streamed = streamed or _has_text(chunk)
                            yield chunk
                    return
                except _ServerFailed as failed:
                    self.endpoints.failed(endpoint)
                    log.warning("vLLM server %s failed: %s", endpoint.url, failed.error.message)
                    if streamed:
                        raise failed.error from None
                    failures.append(failed.error)
                finally:
                    endpoint.outstanding -= 1
            raise self._all_failed(failures)
        finally:
            self._streams.pop(rid, None)
            self._aborted.discard(rid)

    def _all_failed(self, failures: list[VigilError]) -> VigilError:
        if len(self.endpoints) == 1:
            return failures[0]
        reasons = "; ".join(failure.message for failure in failures)
        skipped = len(self.endpoints) - len(failures)
        down = f" ({skipped} more down, not tried)" if skipped else ""
        return Unavailable(
            f"no vLLM server took the request, {len(self.endpoints)} configured{down}: {reasons}"
        )

    async def _stream(
        self, endpoint: Endpoint, body: dict[str, Any], rid: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """One try on one server; ``_ServerFailed`` where another server might do better."""
        url = endpoint.url
        try:
            async with self._client.stream(
                "POST", f"{url}/v1/chat/completions", json=body
            ) as response:
                if response.status_code != 200:
                    error = self._http_error(url, response.status_code, await response.aread())
                    if isinstance(error, VigilError):
                        self.endpoints.worked(endpoint)  # it answered: the request is at fault
                    raise error
                self.endpoints.worked(endpoint)
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
            raise _ServerFailed(
                Unavailable(f"the vLLM server at {url} dropped the stream")
            ) from None
        except httpx.TimeoutException as exc:
            raise _ServerFailed(
                Unavailable(f"the vLLM server at {url} timed out ({type(exc).__name__})")
            ) from None
        except httpx.TransportError as exc:
            raise _ServerFailed(
                Unavailable(f"the vLLM server at {url} is unreachable ({type(exc).__name__})")
            ) from None
        finally:
            self._streams.pop(rid, None)

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
        """Healthy while at least one server answers ``/health``; each check also marks its
        server up or down for the requests that follow."""
        checks = [self._check(endpoint) for endpoint in self.endpoints.all]
        up = sum(await asyncio.gather(*checks))
        if up != self._up:
            log.warning("vLLM servers up: %d of %d", up, len(self.endpoints))
            self._up = up
        return up > 0

    async def _check(self, endpoint: Endpoint) -> bool:
        try:
            response = await self._client.get(
                f"{endpoint.url}/health", timeout=self.health_timeout_s
            )
        except httpx.HTTPError:
            healthy = False
        else:
            healthy = response.status_code == 200
        if healthy:
            self.endpoints.worked(endpoint)
        else:
            self.endpoints.failed(endpoint)
        return healthy
