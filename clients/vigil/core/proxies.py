"""Trusted proxies: whose word about the real client a service believes.

A service behind a proxy (the analyzer behind the bridge, the bridge behind an ingress) sees the
proxy's address; the proxy names the client (``X-Forwarded-For``, ``x-vigil-client``). That name
counts only when the peer is one of the configured proxies: anyone else could write any name and
escape per-client limits.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted(address: str, proxies: Sequence[Network]) -> bool:
    """Whether ``address`` (an IP address as text) lies in one of ``proxies``."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)
