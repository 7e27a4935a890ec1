"""A small real HTTP server speaking vLLM's OpenAI wire format, for several servers at once.

Two vLLM servers do not fit beside the test suite on this machine, and a real one cannot be made
to answer 503, hold requests open on demand or drop a stream halfway. This one streams
``chat.completion.chunk`` server-sent events as ``vllm serve`` does (a role chunk, one chunk a
token, a usage chunk, ``data: [DONE]``), answers errors with vLLM's JSON error body, and serves
``/health``. The engine's failover against the real server is tested in ``test_vllm_remote``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

WORDS = ("A ", "white ", "square ", "crosses.")


class OpenAIStandIn:
    """``status`` other than 200 answers every request (and ``/health``) with it; ``hold`` keeps
    each completion open after its role chunk until ``release``; ``drop_after`` closes the
    connection after that many tokens, without ending the stream. ``arrivals`` is released once
    for every completion that has started streaming (servers may share one)."""

    def __init__(
        self,
        *,
        status: int = 200,
        hold: bool = False,
        drop_after: int | None = None,
        arrivals: asyncio.Semaphore | None = None,
    ) -> None:
        self.status = status
        self.arrivals = arrivals or asyncio.Semaphore(0)
        self.drop_after = drop_after
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()
        self.requests = 0
        self.in_flight = 0
        self.request_ids: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Close the listening socket and every connection: the port then refuses."""
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def release(self) -> None:
        self.gate.set()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=self.status)

    def _error(self) -> web.Response:
        body = {
            "object": "error",
            "message": "The server is overloaded",
            "type": "ServiceUnavailableError",
            "param": None,
            "code": self.status,
        }
        return web.json_response(body, status=self.status)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests += 1
        self.request_ids.append(body.get("request_id", ""))
        if self.status != 200:
            return self._error()
        self.in_flight += 1
        try:
            return await self._stream(request, body)
        finally:
            self.in_flight -= 1

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{body.get('request_id', '')}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            chunk = {**base, "choices": choices, **extra}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        await send([choice({"role": "assistant", "content": ""})])
        self.arrivals.release()
        await self.gate.wait()
        words = WORDS[: body["max_tokens"]]
        for index, word in enumerate(words):
            if index == self.drop_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await send([choice({"content": word}, "length" if index == len(words) - 1 else None)])
        tokens = len(words)
        usage = {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": 9 + tokens}
        await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
