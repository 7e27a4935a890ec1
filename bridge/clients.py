"""Who a request comes from: the socket peer, or the client a trusted reverse proxy names.

uvicorn's own ``X-Forwarded-For`` handling is off (``server.config``): it would believe any
127.0.0.1 peer. Here the header counts only when the peer is one of ``trusted_proxies``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

from vigil.core.proxies import Network, trusted


def client_address(scope: Scope, proxies: Sequence[Network]) -> str:
    """The client's address: the socket peer unless that is a trusted proxy, then the nearest
    ``X-Forwarded-For`` entry that is not one (proxies append, so the right end is the nearest
    hop and the left end is whatever the client chose to write)."""
    peer = scope.get("client")
    address: str = peer[0] if peer else "unknown"
    if not proxies or not trusted(address, proxies):
        return address
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name.lower() == b"x-forwarded-for"
    ]
    hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # not an address: the proxy's word is unusable, count the proxy
    return hops[0] if hops else address
