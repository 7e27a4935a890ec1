"""The load-test report as a table for people (``--json`` prints the dict itself)."""

from __future__ import annotations

from typing import Any


def table(report: dict[str, Any]) -> str:
    lines = [
        f"window {report['window_s']:.1f} s",
        "",
        f"{'class':12} {'clients':>7} {'frames':>8} {'fps':>9} {'fps/client':>10} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'dropped':>8} {'gaps':>6} {'done':>5}",
    ]
    for name, c in report["classes"].items():
        lat = c["latency_ms"]
        lines.append(
            f"{name:12} {c['clients']:>7} {c['frames']:>8} {c['frames_per_s']:>9.1f} "
            f"{c['frames_per_s_per_client']:>10.1f} {lat['p50']:>8.1f} {lat['p95']:>8.1f} "
            f"{lat['p99']:>8.1f} {c['dropped_reported']:>8} {c['sequence_gaps']:>6} "
            f"{c['completed']:>5}"
        )
    lines.append("")
    errors = report["errors"]
    lines.append(
        "errors: " + (", ".join(f"{k}={v}" for k, v in errors.items()) if errors else "none")
    )
    lines.append("")
    lines.append(
        f"{'service':12} {'procs':>5} {'rss MB':>8} {'peak MB':>8} {'cpu s':>7} {'cpu %':>6} "
        f"{'fds':>5} {'threads':>7}"
    )
    for name, r in report["resources"].items():
        lines.append(
            f"{name:12} {r['processes']:>5} {r['rss_mb']:>8.1f} {r['peak_rss_mb']:>8.1f} "
            f"{r['cpu_s']:>7.2f} {r['cpu_percent']:>6.1f} {r['open_fds']:>5} {r['threads']:>7}"
        )
    counters = report["service_counters"]
    for source_id, c in counters["detector"].items():
        lines.append(f"detector {source_id}: {c}")
    if counters["bridge"]:
        lines.append(f"bridge: {counters['bridge']}")
    return "\n".join(lines)
