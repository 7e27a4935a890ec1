"""What a load test does, and the limits that keep it from becoming an attack on someone else."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

from vigil.core import ports

# However a scenario is written, it runs at most this long and this wide: a load generator that
# can be pointed at anything must not be able to run unbounded.
MAX_DURATION_S = 600.0
MAX_DETECT_STREAMS = 64
MAX_SUBSCRIBERS = 256
MAX_VIEWERS = 256
MAX_JOBS = 16
MAX_DETECT_FPS = 240.0


class ScenarioError(ValueError):
    """The scenario is malformed or targets something it may not."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    detector: str = ports.DETECTOR_ADDRESS
    analyzer: str = ports.ANALYZER_ADDRESS
    bridge: str = ports.BRIDGE_URL
    duration_s: float = 10.0
    # N gRPC Detect streams, each sending ``detect_fps`` JPEGs a second.
    detect_streams: int = 1
    detect_fps: float = 5.0
    # M gRPC Subscribe streams of one load-test source.
    subscribers: int = 2
    # How many of those read one frame per ``slow_interval_s`` (the service drops for them).
    slow_subscribers: int = 0
    # K WebSocket viewers through the bridge, ``slow_share`` of them deliberately slow.
    viewers: int = 4
    slow_share: float = 0.25
    # A slow viewer reads one message per ``slow_interval_s``, or at ``slow_bytes_per_s`` when
    # set, through a small kernel receive buffer, so the bridge's send buffer fills up.
    slow_interval_s: float = 1.0
    slow_bytes_per_s: float | None = None
    viewer_format: str = "binary"
    # J workers, each uploading a small generated video, following its analysis, then chatting.
    jobs: int = 0
    chat_question: str = "What happens in this video?"
    # Frame rate of the load test's own live sources (the service caps it at 120).
    source_fps: float = 15.0
    allow_remote: bool = False
    # Seconds after the window for clients to wind down before they are cut off.
    grace_s: float = 5.0

    @property
    def slow_viewers(self) -> int:
        return round(self.viewers * self.slow_share)

    def validate(self) -> None:
        checks = [
            (0 < self.duration_s <= MAX_DURATION_S, f"duration must be in (0, {MAX_DURATION_S}]"),
            (0 <= self.detect_streams <= MAX_DETECT_STREAMS, "too many Detect streams"),
            (0 < self.detect_fps <= MAX_DETECT_FPS, f"detect fps must be in (0, {MAX_DETECT_FPS}]"),
            (0 <= self.subscribers <= MAX_SUBSCRIBERS, "too many subscribers"),
            (0 <= self.slow_subscribers <= self.subscribers, "more slow subscribers than all"),
            (0 <= self.viewers <= MAX_VIEWERS, "too many viewers"),
            (0 <= self.jobs <= MAX_JOBS, "too many concurrent jobs"),
            (0.0 <= self.slow_share <= 1.0, "slow share must be between 0 and 1"),
            (0 < self.source_fps <= 120, "source fps must be in (0, 120]"),
            (self.viewer_format in ("json", "binary"), "viewer format is json or binary"),
            (self.slow_interval_s >= 0, "slow interval must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ScenarioError(message)
        if not self.allow_remote:
            for address in (self.detector, self.analyzer, self.bridge):
                if not all(is_loopback(host) for host in hosts_of(address)):
                    raise ScenarioError(
                        f"{address} is not a loopback address; pass --allow-remote to load-test "
                        "a machine other than this one (only ones you are allowed to)"
                    )


def host_of(address: str) -> str:
    """The host part of ``host:port``, ``[v6]:port`` or ``scheme://host:port/path``."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[1 : rest.index("]")]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def hosts_of(address: str) -> list[str]:
    """Every host an address names: gRPC targets of replicas (``ipv4:h1:p1,h2:p2``,
    ``dns:///host:port``) name several or hide one behind their scheme."""
    for scheme in ("ipv4:", "ipv6:"):
        if address.startswith(scheme):
            return [host_of(part) for part in address.removeprefix(scheme).split(",")]
    if address.startswith("dns:"):
        # dns:[//authority/]host[:port]: the authority is the DNS server, not a target.
        rest = address.removeprefix("dns:")
        if rest.startswith("//"):
            rest = rest[2:].split("/", 1)[-1]
        return [host_of(rest)]
    return [host_of(address)]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    # A name: every address it resolves to must be loopback, or a DNS trick could redirect us.
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
