"""What every ``vigil`` client command shares: connection options, exit codes and output."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

from vigil.core.errors import Unavailable, VigilError
from vigil.sdk import AnalyzerClient, ClientOptions, DetectorClient, Page
from vigil.sdk.options import DEFAULT_ANALYZER_ADDRESS, DEFAULT_DETECTOR_ADDRESS

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "exit codes: 0 success, 1 failure (the service refused or the job failed), 2 usage error, "
    "3 service unavailable, 130 interrupted"
)

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")


class UsageError(Exception):
    """A problem with what the user typed that argparse could not see (exit 2)."""


def connection_options(parser: argparse.ArgumentParser) -> None:
    """Options accepted both before and after the command name.

    SUPPRESS keeps a subcommand's unset option from overwriting one given before the command;
    the real defaults are applied in ``address`` and friends.
    """
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--detector",
        metavar="ADDR",
        default=argparse.SUPPRESS,
        help="detector service host:port (default: $VIGIL_DETECTOR_ADDRESS or "
        f"{DEFAULT_DETECTOR_ADDRESS})",
    )
    group.add_argument(
        "--analyzer",
        metavar="ADDR",
        default=argparse.SUPPRESS,
        help="analyzer service host:port (default: $VIGIL_ANALYZER_ADDRESS or "
        f"{DEFAULT_ANALYZER_ADDRESS})",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token sent with every call (default: $VIGIL_TOKEN)",
    )
    group.add_argument(
        "--tls", action="store_true", default=argparse.SUPPRESS, help="connect with TLS"
    )
    group.add_argument(
        "--root-cert",
        metavar="PEM",
        default=argparse.SUPPRESS,
        help="trust this CA certificate file for TLS (implies --tls; default: system roots)",
    )
    group.add_argument(
        "--client-cert",
        metavar="PEM",
        default=argparse.SUPPRESS,
        help="present this certificate to services wanting mutual TLS (implies --tls; "
        "with --client-key)",
    )
    group.add_argument(
        "--client-key",
        metavar="PEM",
        default=argparse.SUPPRESS,
        help="the private key of --client-cert",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        default=argparse.SUPPRESS,
        help="deadline of each request/response call in seconds (default 10)",
    )


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_command(
    commands: Any, name: str, parent: argparse.ArgumentParser, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A top-level command taking the connection options (``parent``), with the exit codes
    in its help."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, parents=[parent], help=help, description=description, epilog=EXIT_CODES_HELP
    )
    return parser


def handled_by(parser: argparse.ArgumentParser, handler: Handler, service: str) -> None:
    """``parser``'s command runs ``handler`` against ``service`` and can print JSON."""
    json_option(parser)
    parser.set_defaults(handler=handler, service=service)


def address(args: argparse.Namespace, service: str) -> str:
    given: str | None = getattr(args, service, None)
    if given:
        return given
    prefix = f"VIGIL_{service.upper()}_"
    if env := os.environ.get(f"{prefix}ADDRESS"):
        return env
    # Follow the ports `vigil run` starts the services on.
    default_host, default_port = (
        DEFAULT_DETECTOR_ADDRESS if service == "detector" else DEFAULT_ANALYZER_ADDRESS
    ).rsplit(":", 1)
    host = os.environ.get(f"{prefix}HOST", default_host)
    return f"{host}:{os.environ.get(f'{prefix}PORT', default_port)}"


def client_options(args: argparse.Namespace, service: str) -> ClientOptions:
    root_cert: str | None = getattr(args, "root_cert", None)
    client_cert: str | None = getattr(args, "client_cert", None)
    client_key: str | None = getattr(args, "client_key", None)
    return ClientOptions(
        address=address(args, service),
        tls=bool(getattr(args, "tls", False) or root_cert or client_cert or client_key),
        root_certificates=root_cert,
        certificate_chain=client_cert,
        private_key=client_key,
        token=getattr(args, "token", None) or os.environ.get("VIGIL_TOKEN") or None,
        timeout_s=getattr(args, "timeout", 10.0),
    )


def detector_client(args: argparse.Namespace) -> DetectorClient:
    return DetectorClient(client_options(args, "detector"))


def analyzer_client(args: argparse.Namespace) -> AnalyzerClient:
    return AnalyzerClient(client_options(args, "analyzer"))


def fail(message: str) -> None:
    print(f"vigil: {message}", file=sys.stderr, flush=True)


def execute(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command and turn what went wrong into a message and an exit code."""
    service: str = getattr(args, "service", "detector")
    try:
        return handler(args)
    except Unavailable as exc:
        fail(
            f"cannot reach the {service} service at {address(args, service)}: {exc.message}\n"
            f"  Is it running? `vigil run` starts all services; --{service} ADDR or "
            f"VIGIL_{service.upper()}_ADDRESS points elsewhere."
        )
        return EXIT_UNAVAILABLE
    except VigilError as exc:
        fail(f"{exc.code}: {exc.message}")
        return EXIT_FAILURE
    except UsageError as exc:
        fail(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`vigil ... | head`); nothing more to say to it.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - kept for interpreter shutdown
        return EXIT_OK


def plain(value: Any) -> Any:
    """SDK values as JSON-ready data: dataclasses become dicts, ``proto`` and bytes
    (JPEGs) are left out, tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "proto" and not isinstance(getattr(value, f.name), bytes)
        }
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(plain(value)), file=out or sys.stdout, flush=True)


def output(args: argparse.Namespace, value: Any, text: str) -> int:
    """``value`` as JSON with --json, else ``text``; the command succeeded."""
    if args.json:
        print_json(value)
    else:
        print(text)
    return EXIT_OK


def collect(fetch: Callable[[int, str], Page[T]], limit: int) -> list[T]:
    """Up to ``limit`` items of a listing, fetched page by page (``fetch(page_size, token)``)."""
    found: list[T] = []
    token = ""
    while len(found) < limit:
        page = fetch(min(limit - len(found), 500), token)
        found += page.items
        token = page.next_page_token
        if not token:
            break
    return found


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(seconds).astimezone()
    return moment.isoformat(timespec="seconds")


def clock(seconds: float) -> str:
    """Video time as [mm:ss] (or [h:mm:ss])."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )
