"""Upload slots: how many uploads run at once, in all and per client, and who the client is.

A stalled upload holds its slot until its idle timeout ends it; the per-client share keeps a
handful of them from one client from locking everyone else out meanwhile.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from vigil.core.errors import Overloaded
from vigil.core.proxies import Network, trusted
from vigil.core.upload_protocol import CLIENT_KEY

# A proxy's claim longer than this is cut: it is a counter's key, not a place to store data.
MAX_CLIENT_CHARS = 256


class UploadSlots:
    """At most ``total`` uploads at once, at most ``per_client`` of them for one client."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._held: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[None]:
        """A slot for ``client`` for the block; Overloaded (retryable) when none is free."""
        if self._held.total() >= self.total:
            raise Overloaded("too many uploads at once; try again shortly")
        if self._held[client] >= self.per_client:
            raise Overloaded(
                f"this client already has {self._held[client]} uploads in progress, its share "
                f"of the {self.total} upload slots; try again when one has finished"
            )
        self._held[client] += 1
        try:
            yield
        finally:
            self._held[client] -= 1
            if self._held[client] <= 0:
                del self._held[client]


def peer_address(peer: str) -> str:
    """The address in a gRPC peer string: ``ipv4:10.0.0.1:5000`` -> ``10.0.0.1``,
    ``ipv6:[::1]:5000`` -> ``::1``; anything else (``unix:...``) as it is."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return peer


def client_of(context: grpc.aio.ServicerContext[Any, Any], proxies: Sequence[Network]) -> str:
    """Who an upload is for: the caller's address, or the client a trusted proxy names."""
    address = peer_address(context.peer() or "unknown")
    if trusted(address, proxies):
        for key, value in context.invocation_metadata() or ():
            if key == CLIENT_KEY and isinstance(value, str) and value.strip():
                return value.strip()[:MAX_CLIENT_CHARS]
    return address
