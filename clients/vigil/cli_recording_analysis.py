"""``vigil analyze-recording``: an analysis of a time range of a camera's recording, which the
analyzer fetches from the detector service; followed and printed as ``vigil analyze`` does, then
the questions of ``--ask`` answered as ``vigil chat`` answers them."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from typing import Any

from vigil import cli_common as common
from vigil.cli_analyzer import follow, job_exit, show_event, show_result
from vigil.cli_recordings import moment
from vigil.sdk import AnalysisOptions, AnalyzerClient

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
DAY_S = 86_400.0


def add_parser(commands: Any, parent: argparse.ArgumentParser) -> None:
    parser = common.add_command(
        commands,
        "analyze-recording",
        parent,
        help="analyse a time range of a camera's recording and print the result",
        description="Ask the analyzer to fetch [--from, --to) of CAMERA's recording from the "
        "detector service and analyse it as an uploaded video: stages live on stderr, the "
        "result on stdout, then an answer to each --ask. Times: HH:MM[:SS] on --date (default: "
        "the latest day on which the range is over), in this machine's time zone; or ISO 8601, "
        "seconds since the epoch, or relative to now such as -2h (written --from=-2h). Exits 1 "
        "when the job fails.",
    )
    parser.add_argument("source_id", metavar="CAMERA", help="the detector service's source id")
    parser.add_argument("--from", dest="start", required=True, metavar="TIME", help="from")
    parser.add_argument("--to", dest="end", required=True, metavar="TIME", help="until")
    parser.add_argument(
        "--date", type=datetime.date.fromisoformat, help="the day of HH:MM times (YYYY-MM-DD)"
    )
    parser.add_argument(
        "--ask", action="append", default=[], metavar="QUESTION", help="a question (repeatable)"
    )
    parser.add_argument(
        "--policy",
        choices=["seed", "uniform", "adaptive"],
        help="how frames are sampled (default: the service's)",
    )
    parser.add_argument("--max-frames", type=int, default=0, help="most frames the model sees")
    parser.add_argument("--prompt", default="", help="instruction for the summary")
    parser.add_argument(
        "--skip-detection", action="store_true", help="skip the coarse detection pass"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    common.handled_by(parser, analyze_recording_command, "analyzer")


def _on_day(match: re.Match[str], day: datetime.date) -> float:
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    try:
        at = datetime.datetime.combine(day, datetime.time(hour, minute, second))
    except ValueError:
        raise common.UsageError(f"not a time of day: {match[0]!r}") from None
    return at.astimezone().timestamp()  # local time, as `date` shows it


def time_range(
    start: str, end: str, day: datetime.date | None, now: float | None = None
) -> tuple[float, float]:
    """The range the options name, in seconds since the epoch."""
    now = time.time() if now is None else now
    today = datetime.datetime.fromtimestamp(now).date()
    clocks = _CLOCK.match(start), _CLOCK.match(end)
    try:
        first = _on_day(clocks[0], day or today) if clocks[0] else moment(start)
        last = _on_day(clocks[1], day or today) if clocks[1] else moment(end)
    except argparse.ArgumentTypeError as exc:
        raise common.UsageError(str(exc)) from None
    if clocks[1] and last <= first:
        last += DAY_S  # 23:00 to 01:00 ends on the next day
    if day is None and all(clocks) and last > now:
        first, last = first - DAY_S, last - DAY_S  # 02:00 to 04:00 asked at 01:00: last night
    return first, last


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def analyze_recording_command(args: argparse.Namespace) -> int:
    start, end = time_range(args.start, args.end, args.date)
    options = AnalysisOptions(
        sampling_policy=args.policy or "unspecified",
        max_frames=args.max_frames,
        prompt=args.prompt,
        skip_detection=args.skip_detection,
    )
    with common.analyzer_client(args) as client:
        if not args.quiet:
            asked = f"{args.source_id} from {_when(start)} to {_when(end)}"
            print(f"fetching the recording of {asked}", file=sys.stderr, flush=True)
        job = client.analyze_recording(args.source_id, start, end, options)
        if not args.quiet:
            print(f"video {job.video.id if job.video else '-'}, job {job.id}", file=sys.stderr)
        try:
            for event in follow(client, job.id):
                if not args.quiet:
                    show_event(event)
        except KeyboardInterrupt:
            common.fail(f"stopped following; job {job.id} goes on (`vigil jobs show {job.id}`)")
            return common.EXIT_INTERRUPTED
        job = client.get_job(job.id)
        answers = [ask(client, job.id, q) for q in args.ask] if job.state == "succeeded" else []
    if args.json:
        common.print_json({"job": job, "answers": answers})
    else:
        if job.result is not None:
            show_result(job.result)
        for answer in answers:
            print(f"\nQ: {answer['question']}\nA: {answer['text'].strip()}")
    return job_exit(job)


def ask(client: AnalyzerClient, job_id: str, question: str) -> dict[str, Any]:
    text, cited = "", tuple[float, ...]()
    with client.chat(job_id, question) as answer:
        for chunk in answer:
            text += chunk.delta
            if chunk.done:
                text, cited = chunk.text or text, chunk.cited_times_s
    return {"question": question, "text": text, "cited_times_s": list(cited)}
