"""uvicorn's HTTP protocol with a deadline on request headers.

uvicorn arms its only timer (keep-alive) after a response: a connection that sends nothing, or
headers a byte at a time, or a WebSocket upgrade request it never finishes, is held for ever,
and a few thousand of them exhaust the process's file descriptors (the Guard's per-client
limits only see requests whose headers are complete). Here a request's headers must be
complete within ``header_timeout_s`` of the connection opening or of the request's first byte;
otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """The HTTP protocol class for uvicorn's ``http`` option."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            # No request in progress: these are the first bytes of the next one's headers.
            if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
