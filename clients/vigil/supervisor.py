"""Supervision of `vigil run`'s services: restart what exits unexpectedly, stop at a crash loop.

A service that exits without being asked (any exit status, or a signal) is started again after a
backoff that doubles from ``backoff_s`` up to ``backoff_max_s``; one that then stays up for
``stable_s`` starts the next backoff from the beginning again. A service that needs more than
``max_restarts`` restarts within ``window_s`` is given up on: it is marked FAILED and left down
while the others keep running. Every exit is logged with its cause and the restart count, and the
counts are Prometheus metrics (``vigil_service_restarts_total{service}``,
``vigil_service_state{service,state}``).

Self-contained on purpose: it runs commands, it never imports the services.
"""

from __future__ import annotations

import collections
import enum
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class State(enum.Enum):
    RUNNING = "running"
    BACKOFF = "backoff"  # exited unexpectedly; starts again at ``next_start``
    FAILED = "failed"  # crash loop: given up on
    STOPPED = "stopped"  # stopped by the supervisor


@dataclass(frozen=True)
class Policy:
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    # Up this long, a service counts as healthy again: its next backoff starts from backoff_s.
    stable_s: float = 60.0
    # More restarts than this within window_s is a crash loop.
    max_restarts: int = 5
    window_s: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Policy:
        """``VIGIL_RUN_BACKOFF_S``, ``_BACKOFF_MAX_S``, ``_STABLE_S``, ``_MAX_RESTARTS``,
        ``_RESTART_WINDOW_S``; a value that is not a number stops the launcher with its name."""
        names = {
            "backoff_s": "VIGIL_RUN_BACKOFF_S",
            "backoff_max_s": "VIGIL_RUN_BACKOFF_MAX_S",
            "stable_s": "VIGIL_RUN_STABLE_S",
            "max_restarts": "VIGIL_RUN_MAX_RESTARTS",
            "window_s": "VIGIL_RUN_RESTART_WINDOW_S",
        }
        values: dict[str, float] = {}
        for key, name in names.items():
            if name not in env:
                continue
            try:
                value = int(env[name]) if key == "max_restarts" else float(env[name])
            except ValueError:
                raise ValueError(f"{name} must be a number, not {env[name]!r}") from None
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            values[key] = value
        return cls(**values)  # type: ignore[arg-type]

    def delay(self, consecutive: int) -> float:
        """Seconds before restart number ``consecutive`` (1-based) of an unstable service."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, consecutive - 1)))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _stderr(message: str) -> None:
    print(f"vigil: {message}", file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    state: State = State.STOPPED
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    restarts: int = 0  # in all, since the supervisor started
    consecutive: int = 0  # restarts since the service was last stable
    recent: collections.deque[float] = field(default_factory=collections.deque)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None


class Supervisor:
    """Runs one process per service; call ``poll`` regularly, ``stop`` once at the end."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        env: Mapping[str, str],
        policy: Policy,
        log: Callable[[str], None] = _stderr,
    ) -> None:
        self.children = {name: Child(name, argv) for name, argv in commands.items()}
        self.env = dict(env)
        self.policy = policy
        self.log = log

    def start(self) -> None:
        for child in self.children.values():
            self._spawn(child, time.monotonic())

    def alive(self) -> bool:
        """Whether any service runs or will run again (all FAILED: nothing left to supervise)."""
        return any(c.state in (State.RUNNING, State.BACKOFF) for c in self.children.values())

    def failed(self) -> list[str]:
        return [c.name for c in self.children.values() if c.state is State.FAILED]

    def poll(self) -> None:
        """Notice exits, and start the services whose backoff is over."""
        now = time.monotonic()
        for child in self.children.values():
            if child.state is State.RUNNING and child.popen is not None:
                returncode = child.popen.poll()
                if returncode is not None:
                    self._exited(child, returncode, now)
                elif child.consecutive and now - child.started_at >= self.policy.stable_s:
                    child.consecutive = 0
            if child.state is State.BACKOFF and now >= child.next_start:
                self._spawn(child, now)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to every running service (none is started again), SIGKILL after ``timeout_s``."""
        running = [c for c in self.children.values() if c.state is State.RUNNING]
        for child in self.children.values():
            if child.state is State.BACKOFF:
                child.state = State.STOPPED
        for child in running:
            assert child.popen is not None
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in running:
            assert child.popen is not None
            try:
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{child.name} did not stop within {timeout_s:.0f} s; killing it")
                child.popen.kill()
                child.popen.wait()
            child.state = State.STOPPED

    def _spawn(self, child: Child, now: float) -> None:
        child.popen = subprocess.Popen(list(child.argv), env=self.env)
        child.state = State.RUNNING
        child.started_at = now
        if child.restarts:
            self.log(f"{child.name} started again (pid {child.pid}, restart {child.restarts})")

    def _exited(self, child: Child, returncode: int, now: float) -> None:
        cause = describe_exit(returncode)
        window = self.policy.window_s
        while child.recent and now - child.recent[0] > window:
            child.recent.popleft()
        if len(child.recent) >= self.policy.max_restarts:
            child.state = State.FAILED
            self.log(
                f"{child.name} exited unexpectedly ({cause}) after {child.restarts} restart(s), "
                f"{len(child.recent)} of them within {window:.0f} s: crash loop, giving up on it; "
                "the other services keep running"
            )
            return
        child.restarts += 1
        child.consecutive += 1
        child.recent.append(now)
        delay = self.policy.delay(child.consecutive)
        child.state = State.BACKOFF
        child.next_start = now + delay
        self.log(
            f"{child.name} exited unexpectedly ({cause}) after {now - child.started_at:.1f} s up; "
            f"restart {child.restarts} in {delay:.1f} s"
        )


class SupervisorCollector(Collector):
    """The supervisor's counts, read when Prometheus scrapes."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        restarts = CounterMetricFamily(
            "vigil_service_restarts",
            "Times vigil run restarted a service that exited unexpectedly",
            labels=["service"],
        )
        state = GaugeMetricFamily(
            "vigil_service_state",
            "1 for the state each service is in (running, backoff, failed, stopped)",
            labels=["service", "state"],
        )
        for child in self.supervisor.children.values():
            restarts.add_metric([child.name], child.restarts)
            for each in State:
                state.add_metric([child.name, each.value], 1.0 if child.state is each else 0.0)
        yield restarts
        yield state
