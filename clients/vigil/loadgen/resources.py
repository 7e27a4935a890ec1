"""Resource use of a service process (and the children it spawned), read from /proc."""

from __future__ import annotations

import dataclasses
import os
import pathlib

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = pathlib.Path("/proc")


@dataclasses.dataclass(frozen=True)
class Usage:
    rss_mb: float
    cpu_s: float
    fds: int
    threads: int
    processes: int


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process, None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _status(pid: int) -> tuple[float, int]:
    rss_kb, threads = 0, 0
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except OSError:
        pass
    return rss_kb / 1024, threads


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(_PROC / str(pid) / "fd"))
    except OSError:
        return 0


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the analyzer's media workers, vLLM's engine core)."""
    parents: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def usage(pid: int, *, children: bool = True) -> Usage | None:
    """Summed over the process family; None when /proc has no such process (or no /proc)."""
    if _stat(pid) is None:
        return None
    pids = family(pid) if children else [pid]
    rss = cpu = 0.0
    fds = threads = 0
    for p in pids:
        stat = _stat(p)
        if stat is None:
            continue
        cpu += stat[1]
        mb, n = _status(p)
        rss, threads, fds = rss + mb, threads + n, fds + _fds(p)
    return Usage(round(rss, 1), round(cpu, 2), fds, threads, len(pids))


class Tracker:
    """CPU seconds over a window and peak RSS, for each named process."""

    def __init__(self, pids: dict[str, int], *, children: bool = True) -> None:
        self.pids = pids
        self.children = children
        self._start = {name: usage(pid, children=children) for name, pid in pids.items()}
        self._peak = {name: (u.rss_mb if u else 0.0) for name, u in self._start.items()}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            now = usage(pid, children=self.children)
            if now is not None:
                self._peak[name] = max(self._peak[name], now.rss_mb)

    def cpu_percent(self, window_s: float) -> dict[str, float]:
        return {name: r["cpu_percent"] for name, r in self.report(window_s).items()}

    def report(self, window_s: float) -> dict[str, dict[str, float | int]]:
        out: dict[str, dict[str, float | int]] = {}
        for name, pid in self.pids.items():
            start, end = self._start[name], usage(pid, children=self.children)
            if start is None or end is None:
                continue
            cpu = end.cpu_s - start.cpu_s
            out[name] = {
                "pid": pid,
                "processes": end.processes,
                "rss_mb": end.rss_mb,
                "peak_rss_mb": max(self._peak[name], end.rss_mb),
                "cpu_s": round(cpu, 2),
                "cpu_percent": round(100 * cpu / max(window_s, 1e-9), 1),
                "open_fds": end.fds,
                "threads": end.threads,
            }
        return out
