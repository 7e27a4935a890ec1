"""``vigil.supervisor`` on real tiny processes: restarts, causes, the crash-loop limit, stopping."""

from __future__ import annotations

import sys
import time

import pytest

from vigil.supervisor import Policy, State, Supervisor, SupervisorCollector

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SEGFAULT = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
# Up for a second, then a crash: the supervisor sees it running before it exits.
LATE_CRASH = [sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


def poll_until(supervisor: Supervisor, done: object, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the deadline"
        supervisor.poll()
        time.sleep(0.02)


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = Policy(backoff_s=0.5, backoff_max_s=30)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_setting_that_is_not_a_number_is_named() -> None:
    with pytest.raises(ValueError, match="VIGIL_RUN_MAX_RESTARTS"):
        Policy.from_env({"VIGIL_RUN_MAX_RESTARTS": "many"})
    assert Policy.from_env({"VIGIL_RUN_BACKOFF_S": "2"}).backoff_s == 2


def test_a_crash_loop_is_given_up_on_while_the_others_keep_running() -> None:
    logged: list[str] = []
    policy = Policy(backoff_s=0.01, max_restarts=2, window_s=600)
    supervisor = Supervisor(
        {"crashy": CRASH, "segv": SEGFAULT, "steady": SLEEP}, {}, policy, log=logged.append
    )
    supervisor.start()
    steady = supervisor.children["steady"].pid
    try:
        poll_until(supervisor, lambda: not {"crashy", "segv"} - set(supervisor.failed()))
        assert supervisor.alive()
        assert supervisor.children["steady"].state is State.RUNNING
        assert supervisor.children["steady"].pid == steady
        assert supervisor.children["crashy"].restarts == 2
        assert sum("crashy exited unexpectedly (exit status 3)" in line for line in logged) == 3
        assert any("segv exited unexpectedly (killed by SIGSEGV)" in line for line in logged)
        assert any("crashy" in line and "crash loop" in line for line in logged)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in SupervisorCollector(supervisor).collect()
            for s in family.samples
        }
        assert samples[("vigil_service_restarts_total", (("service", "crashy"),))] == 2
        assert samples[("vigil_service_state", (("service", "crashy"), ("state", "failed")))] == 1
        assert samples[("vigil_service_state", (("service", "steady"), ("state", "running")))] == 1
    finally:
        supervisor.stop()
    assert {c.name: c.state for c in supervisor.children.values()}["steady"] is State.STOPPED
    assert supervisor.children["steady"].popen is not None
    assert supervisor.children["steady"].popen.returncode is not None


def test_a_service_that_stays_up_starts_its_next_backoff_from_the_beginning() -> None:
    logged: list[str] = []
    # Up for stable_s (0 here) counts as recovered: each exit waits backoff_s again, not double.
    policy = Policy(backoff_s=1, backoff_max_s=10, stable_s=0, max_restarts=100)
    supervisor = Supervisor({"flaky": LATE_CRASH}, {}, policy, log=logged.append)
    supervisor.start()
    try:
        poll_until(supervisor, lambda: supervisor.children["flaky"].restarts >= 3)
    finally:
        supervisor.stop()
    delays = [line.rsplit(" in ", 1)[1] for line in logged if "exited unexpectedly" in line]
    assert delays[:3] == ["1.0 s"] * 3, logged
