"""``vigil analyze``, ``vigil chat`` and ``vigil jobs``: the analyzer service."""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from vigil import cli_common as common
from vigil.core.errors import Unavailable
from vigil.sdk import AnalysisEvent, AnalysisOptions, AnalysisResult, AnalyzerClient, Job
from vigil.sdk.analyzer_types import JOB_STATES

# Times a broken event stream is picked up again (where it left off) before giving up.
RESUME_ATTEMPTS = 3


def add_parsers(commands: Any, parent: argparse.ArgumentParser) -> None:
    analyze = common.add_command(
        commands,
        "analyze",
        parent,
        help="upload a video, follow its analysis and print the result",
        description="Upload a video file to the analyzer service (a progress bar on stderr), "
        "start an analysis, show its stages live on stderr and print the result on stdout. "
        "Exits 1 when the job fails, with the error's code and message.",
    )
    analyze.add_argument("file", metavar="FILE", help="the video file")
    analyze.add_argument(
        "--policy",
        choices=["seed", "uniform", "adaptive"],
        help="how frames are sampled (default: the service's)",
    )
    analyze.add_argument("--max-frames", type=int, default=0, help="most frames the model sees")
    analyze.add_argument("--prompt", default="", help="instruction for the summary")
    analyze.add_argument(
        "--skip-detection", action="store_true", help="skip the coarse detection pass"
    )
    analyze.add_argument(
        "--no-follow", action="store_true", help="upload and start, print the job id, exit"
    )
    analyze.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    common.handled_by(analyze, analyze_command, "analyzer")

    chat = common.add_command(
        commands,
        "chat",
        parent,
        help="ask questions about an analysed video",
        description="Stream the answer to QUESTION about the video of JOB_ID. Without "
        "QUESTION, read one question per line from stdin until end of input.",
    )
    chat.add_argument("job_id", metavar="JOB_ID", help="an analysis job (see `vigil jobs ls`)")
    chat.add_argument("question", metavar="QUESTION", nargs="?", help="the question")
    chat.add_argument("--max-tokens", type=int, default=0, help="longest answer in tokens")
    common.handled_by(chat, chat_command, "analyzer")

    jobs = common.add_command(
        commands,
        "jobs",
        parent,
        help="list, show and cancel analysis jobs",
        description="The analyzer's jobs, newest first.",
    )
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", parents=[parent], help="list jobs")
    ls.add_argument("--state", choices=sorted(JOB_STATES), help="only jobs in this state")
    ls.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    common.handled_by(ls, jobs_ls, "analyzer")
    show = actions.add_parser("show", parents=[parent], help="one job with its result")
    show.add_argument("job_id", metavar="JOB_ID")
    common.handled_by(show, jobs_show, "analyzer")
    cancel = actions.add_parser("cancel", parents=[parent], help="stop a queued or running job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    common.handled_by(cancel, jobs_cancel, "analyzer")


class ProgressBar:
    """An upload bar on stderr: redrawn in place on a terminal, drawn once when done otherwise."""

    WIDTH = 30

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self.drawn_at = 0.0

    def __call__(self, sent: int, total: int) -> None:
        done = sent >= total
        if not self.enabled or not (done or self.live):
            return
        now = time.monotonic()
        if not done and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        share = sent / total if total else 1.0
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = (
            f"uploading {self.name} [{bar}] {share:4.0%} {sent / 2**20:.1f}/{total / 2**20:.1f} MiB"
        )
        end = "\n" if done else ""
        print(f"\r{line}" if self.live else line, end=end, file=sys.stderr, flush=True)


def follow(client: AnalyzerClient, job_id: str) -> Iterator[AnalysisEvent]:
    """The job's events until its last one, picking a broken stream up where it left off."""
    last = 0
    failures = 0
    while True:
        try:
            for event in client.events(job_id, after_sequence=last):
                last = event.sequence
                failures = 0
                yield event
                if event.final:
                    return
            return
        except Unavailable:
            failures += 1
            if failures > RESUME_ATTEMPTS:
                raise
            time.sleep(1.0)


def show_event(event: AnalysisEvent) -> None:
    if event.kind == "progress":
        stage = event.stage.replace("_", " ")
        line = f"[{event.percent:3.0f}%] {stage}: {event.message}"
        if event.queue_position:
            line += f" (queue position {event.queue_position})"
    elif event.kind in ("long_video", "thinking"):
        line = f"       {event.message}"
    else:
        # The result and the error are the command's output, printed once the job has ended.
        return
    print(line, file=sys.stderr, flush=True)


def show_result(result: AnalysisResult) -> None:
    print(result.summary.strip() or "(no summary)")
    if result.timeline:
        print("\nTimeline:")
        for event in result.timeline:
            print(
                f"  [{common.clock(event.start_s)}-{common.clock(event.end_s)}] {event.description}"
            )
    if result.frames:
        first, last = result.frames[0].time_s, result.frames[-1].time_s
        span = f"{common.clock(first)} to {common.clock(last)}"
        print(f"\nFrames: {len(result.frames)} sampled from {span}")
    else:
        print("\nFrames: none")
    if result.model:
        t = result.timings
        print(f"Model: {result.model}; {t.total_s:.1f} s (inference {t.inference_s:.1f} s)")
    for note in result.notes:
        print(f"Note: {note}")


def analyze_command(args: argparse.Namespace) -> int:
    options = AnalysisOptions(
        sampling_policy=args.policy or "unspecified",
        max_frames=args.max_frames,
        prompt=args.prompt,
        skip_detection=args.skip_detection,
    )
    with common.analyzer_client(args) as client:
        bar = ProgressBar(pathlib.Path(args.file).name, enabled=not args.quiet)
        uploaded = client.upload_video(
            args.file, start_analysis=True, options=options, progress=bar
        )
        job = uploaded.job
        assert job is not None, "the service started no job although asked to"
        if not args.quiet:
            print(f"video {uploaded.video.id}, job {job.id}", file=sys.stderr, flush=True)
        if args.no_follow:
            return common.output(args, {"video": uploaded.video, "job": job}, job.id)
        try:
            for event in follow(client, job.id):
                if not args.quiet:
                    show_event(event)
        except KeyboardInterrupt:
            common.fail(f"stopped following; job {job.id} goes on (`vigil jobs show {job.id}`)")
            return common.EXIT_INTERRUPTED
        job = client.get_job(job.id)
    if args.json:
        common.print_json({"video": uploaded.video, "job": job})
    elif job.result is not None:
        show_result(job.result)
    return job_exit(job)


def job_exit(job: Job) -> int:
    if job.state == "succeeded":
        return common.EXIT_OK
    error = job.error
    detail = f"{error.code}: {error.message}" if error else f"the job ended {job.state}"
    common.fail(f"analysis {job.state}: {detail}")
    return common.EXIT_FAILURE


def questions(args: argparse.Namespace) -> Iterator[str]:
    if args.question:
        yield args.question
        return
    prompt = sys.stdin.isatty()
    while True:
        if prompt:
            print("question> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def chat_command(args: argparse.Namespace) -> int:
    with common.analyzer_client(args) as client:
        for question in questions(args):
            text, cited, tokens = "", tuple[float, ...](), 0
            with client.chat(args.job_id, question, max_tokens=args.max_tokens) as answer:
                for chunk in answer:
                    text += chunk.delta
                    tokens = chunk.completion_tokens
                    if not args.json and chunk.delta:
                        print(chunk.delta, end="", flush=True)
                    if chunk.done:
                        text, cited = chunk.text or text, chunk.cited_times_s
            if args.json:
                record = {"question": question, "text": text, "cited_times_s": list(cited)}
                common.print_json({**record, "completion_tokens": tokens})
            else:
                print()
                if cited:
                    print(f"(cites {', '.join(common.clock(t) for t in cited)})", flush=True)
    return common.EXIT_OK


JOB_HEADERS = ["ID", "STATE", "DONE", "VIDEO", "CREATED", "ERROR"]


def job_row(job: Job) -> list[object]:
    name = job.video.name if job.video else "-"
    error = job.error.code if job.error else ""
    return [job.id, job.state, f"{job.percent:.0f}%", name, common.when(job.created_at), error]


def jobs_ls(args: argparse.Namespace) -> int:
    with common.analyzer_client(args) as client:
        found = common.collect(
            lambda size, token: client.list_jobs(
                page_size=size, page_token=token, state=args.state
            ),
            args.limit,
        )
    text = common.table(JOB_HEADERS, [job_row(j) for j in found]) if found else "no jobs"
    return common.output(args, found, text)


def jobs_show(args: argparse.Namespace) -> int:
    with common.analyzer_client(args) as client:
        job = client.get_job(args.job_id)
    if args.json:
        common.print_json(job)
        return common.EXIT_OK
    print(common.table(JOB_HEADERS, [job_row(job)]))
    if job.error:
        print(f"\nError: {job.error}")
    if job.result is not None:
        print()
        show_result(job.result)
    return common.EXIT_OK


def jobs_cancel(args: argparse.Namespace) -> int:
    with common.analyzer_client(args) as client:
        job = client.cancel_job(args.job_id)
    return common.output(args, job, f"job {job.id}: {job.state}")
