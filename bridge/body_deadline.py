"""The idle deadline on request bodies: a body that sends nothing for ``upload_idle_timeout_s``
ends with 408 (IDLE_TIMEOUT) and its connection is closed.

Applies to every HTTP request (an upload, a Socket.IO long-polling POST, a JSON body): a client
that sends its headers and then stalls must not hold its connection, or an analyzer upload slot,
for ever. Only the waits for the body count; once the body is complete ``receive`` is passed
through untouched, since a streaming response waits on it for the client's disconnect.

On expiry the application is told the client is gone (``http.disconnect``), which every ASGI
application handles (the upload route cancels the analyzer's side, which removes what it had
stored; engine.io drops the partial packet), and whatever it answers is replaced by the 408.
"""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Send

from bridge.metrics import Metrics


class BodyDeadline:
    def __init__(self, receive: Receive, send: Send, idle_s: float, metrics: Metrics) -> None:
        self._receive = receive
        self._send = send
        self.idle_s = idle_s
        self.metrics = metrics
        self._body_done = False
        self.expired = False
        self._answered = False

    async def receive(self) -> Message:
        if self._body_done or self.expired:
            return await self._receive()
        try:
            async with asyncio.timeout(self.idle_s):
                message = await self._receive()
        except TimeoutError:
            self.expired = True
            self.metrics.refused.labels("body_idle").inc()
            return {"type": "http.disconnect"}
        self._body_done = message["type"] != "http.request" or not message.get("more_body")
        return message

    async def send(self, message: Message) -> None:
        if not self.expired:
            await self._send(message)
        elif message["type"] == "http.response.start":
            await self.answer()

    async def answer(self) -> None:
        """The 408, once; after an expiry, in place of the application's own response."""
        if self._answered or not self.expired:
            return
        self._answered = True
        body = (
            b'{"code":"IDLE_TIMEOUT","message":"no data for '
            + f"{self.idle_s:g}".encode()
            + b' s: the idle timeout ended the request"}'
        )
        await self._send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body may still come: the connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await self._send({"type": "http.response.body", "body": body})
