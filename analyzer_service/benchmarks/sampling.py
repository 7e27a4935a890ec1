"""Time to sample frames from videos with the analyzer's own code (``media``: probe, then exact
seeks; ``sampling.uniform_targets``), exact and with keyframe slack.

``python -m analyzer_service.benchmarks.sampling OPTIONS_JSON`` with ``videos`` (label -> path),
``frames``, ``repeat`` and ``slack_s`` prints, per label, the median seconds of both kinds of run
as JSON; ``vigil bench sampling`` makes the videos and runs it.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

from analyzer_service import media, sampling


def sample_once(path: pathlib.Path, work: pathlib.Path, slack_s: float, count: int) -> float:
    start = time.perf_counter()
    info = media.probe(str(path))
    targets = sampling.uniform_targets(info.duration_s, info.fps, info.frame_count, count)
    frames = media.sample_frames(
        str(path), targets, str(work), max_side=1280, jpeg_quality=85, slack_s=slack_s
    )
    elapsed = time.perf_counter() - start
    assert len(frames) == len(targets)
    return elapsed


def run(options: dict[str, Any]) -> dict[str, dict[str, float]]:
    count, repeat, slack_s = int(options["frames"]), int(options["repeat"]), options["slack_s"]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-sampling-") as tmp:
        work = pathlib.Path(tmp)
        for label, name in options["videos"].items():
            path = pathlib.Path(name)
            sample_once(path, work / "warm", 0.0, count)  # file in page cache, codecs loaded
            exact = [sample_once(path, work / f"{label}-{i}", 0.0, count) for i in range(repeat)]
            slack = [
                sample_once(path, work / f"{label}-s{i}", slack_s, count) for i in range(repeat)
            ]
            out[label] = {"exact_s": statistics.median(exact), "slack_s": statistics.median(slack)}
    return out


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
