"""Uploads through the bridge that stall, crowd or come as a browser's form, against a real
analyzer: stalled ones end with 408 and leave nothing, one client cannot take every upload
slot (its address from X-Forwarded-For only via a trusted proxy), and ``multipart/form-data``
streams to the analyzer under the same limits."""

from __future__ import annotations

import asyncio
import ipaddress
import pathlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from analyzer_service.server import AnalyzerServer
from bridge.clients import client_address

pytestmark = pytest.mark.timeout(60)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
BOUNDARY = "vigil-test-boundary"
# How long a refused upload's analyzer must stay clean of it (see nothing_kept).
STILL_S = 2.0
FILE_PART_HEAD = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="stalled.mp4"\r\n'
    "Content-Type: video/mp4\r\n\r\n"
).encode()


async def stall(port: int, *, forwarded: str | None = None, form: bool = False) -> Connection:
    """An upload that sends its headers and a few bytes of a large body, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    kind = f"multipart/form-data; boundary={BOUNDARY}" if form else "application/octet-stream"
    head = (
        "POST /api/videos?name=stalled.mp4 HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: 1000000\r\nContent-Type: {kind}\r\n"
    )
    if forwarded is not None:
        head += f"X-Forwarded-For: {forwarded}\r\n"
    writer.write(head.encode() + b"\r\n" + (FILE_PART_HEAD if form else b"") + b"\x00" * 16)
    await writer.drain()
    return reader, writer


async def answer(connection: Connection) -> tuple[int, dict[str, str], Any]:
    """The status, headers and JSON body of the response on a raw connection."""
    reader, _ = connection
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, orjson.loads(body)


def leftovers(analyzer: AnalyzerServer) -> tuple[list[str], int]:
    """Files in the video directory and video rows in the database."""
    videos = analyzer.settings.videos_dir
    files = sorted(p.name for p in videos.iterdir()) if videos.exists() else []
    with sqlite3.connect(analyzer.settings.database) as db:
        rows: int = db.execute("SELECT count(*) FROM videos").fetchone()[0]
    return files, rows


async def until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(15):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert check(), what


async def nothing_kept(analyzer: AnalyzerServer, what: str) -> None:
    """No video file or row, and still none a while later. The bridge answers a refused form as
    soon as it cancels its upload call, and on a loaded machine the analyzer may begin that
    cancelled upload (a part file, removed again at once) after the answer: an empty directory
    seen once, before then, proves nothing."""
    quiet_since = None
    async with asyncio.timeout(20):
        while quiet_since is None or asyncio.get_running_loop().time() - quiet_since < STILL_S:
            if leftovers(analyzer) != ([], 0):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = asyncio.get_running_loop().time()
            await asyncio.sleep(0.02)
    assert leftovers(analyzer) == ([], 0), what


def parts(analyzer: AnalyzerServer) -> int:
    videos = analyzer.settings.videos_dir
    return len(list(videos.glob("*.part"))) if videos.exists() else 0


Start = Callable[..., Awaitable[Any]]


@pytest.fixture
def clip(video_file: pathlib.Path) -> bytes:
    return video_file.read_bytes()


@pytest.fixture
def stack(start_bridge: Start, start_analyzer: Start) -> Start:
    """``stack(analyzer={...}, **bridge)``: an analyzer and a bridge in front of it."""

    async def start(analyzer: dict[str, Any] | None = None, **bridge: Any) -> tuple[Any, Any]:
        ana = await start_analyzer(**(analyzer or {}))
        bri = await start_bridge(analyzer_address=f"127.0.0.1:{ana.port}", **bridge)
        return ana, bri

    return start


async def test_stalled_uploads_end_with_408_and_free_their_slots(stack: Start, clip: bytes) -> None:
    analyzer, bridge = await stack(
        analyzer={"max_concurrent_uploads": 3, "max_uploads_per_client": 3},
        upload_idle_timeout_s=1.0,
    )
    # As many stalled uploads as the analyzer has slots (one of them a form): today they hold
    # every slot for ever and each later upload gets 429.
    stalled = [await stall(bridge.port) for _ in range(2)]
    stalled.append(await stall(bridge.port, form=True))
    for connection in stalled:
        status, headers, body = await answer(connection)
        assert status == 408, body
        assert body == {
            "code": "IDLE_TIMEOUT",
            "message": "no data for 1 s: the idle timeout ended the request",
        }
        assert headers["connection"] == "close"
        connection[1].close()
    await nothing_kept(analyzer, "nothing of a stalled upload is kept")
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        response = await http.post("/api/videos", params={"name": "ok.mp4"}, content=clip)
    assert response.status_code == 201, response.text


async def test_one_client_cannot_take_every_upload_slot(stack: Start, clip: bytes) -> None:
    # 4 slots, 2 a client; the bridge sits behind a proxy on 127.0.0.1.
    analyzer, bridge = await stack(
        analyzer={"max_concurrent_uploads": 4}, trusted_proxies=["127.0.0.1/32"]
    )
    greedy = "198.51.100.7"
    # The client's own claim (left) is not believed; the proxy's (right) is.
    stalled = [await stall(bridge.port, forwarded=f"10.9.9.{n}, {greedy}") for n in range(2)]
    await until(lambda: parts(analyzer) == 2, "both stalled uploads reached the analyzer")
    data = clip
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        refused = await http.post(
            "/api/videos",
            params={"name": "third.mp4"},
            content=data,
            headers={"x-forwarded-for": f"203.0.113.1, {greedy}"},
        )
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"]
        assert refused.json()["code"] == "OVERLOADED"
        assert "its share of the 4 upload slots" in refused.json()["message"]
        # Another client (and the proxy's own requests) still get through.
        for forwarded in ("198.51.100.8", None):
            headers = {"x-forwarded-for": forwarded} if forwarded else {}
            response = await http.post(
                "/api/videos", params={"name": "other.mp4"}, content=data, headers=headers
            )
            assert response.status_code == 201, response.text
    for _, writer in stalled:
        writer.close()


async def test_forwarded_for_is_ignored_from_untrusted_peers(stack: Start, clip: bytes) -> None:
    # No trusted proxies: every request here comes from 127.0.0.1, whatever it claims.
    analyzer, bridge = await stack(analyzer={"max_concurrent_uploads": 4})
    stalled = [await stall(bridge.port, forwarded=f"198.51.100.{n}") for n in range(2)]
    await until(lambda: parts(analyzer) == 2, "both stalled uploads reached the analyzer")
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        response = await http.post(
            "/api/videos",
            params={"name": "third.mp4"},
            content=clip,
            headers={"x-forwarded-for": "198.51.100.99"},
        )
    assert response.status_code == 429, response.text
    assert "its share of the 4 upload slots" in response.json()["message"]
    for _, writer in stalled:
        writer.close()


async def test_a_browser_form_is_streamed_to_the_analyzer(stack: Start, clip: bytes) -> None:
    analyzer, bridge = await stack()
    data = clip
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        response = await http.post(
            "/api/videos",
            params={"analyze": "true"},
            data={"note": "from the lobby"},
            files={"file": ("lobby camera.mp4", data, "video/mp4")},
        )
    assert response.status_code == 201, response.text
    video = response.json()["video"]
    assert (video["name"], video["size"], video["width"]) == ("lobby camera.mp4", len(data), 320)
    assert response.json()["job"]["video"]["id"] == video["id"]
    stored = analyzer.settings.videos_dir / video["id"]
    assert stored.read_bytes() == data


def form(*parts: tuple[str, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
BAD_FORMS = {
    "no file part": (MULTIPART, form(("note", None, b"hi")), "the form has no file part"),
    "two file parts": (
        MULTIPART,
        form(("a", "a.mp4", b"x" * 10), ("b", "b.mp4", b"y" * 10)),
        "more than one file part",
    ),
    "no boundary": ("multipart/form-data", form(("f", "a.mp4", b"x")), "no usable boundary"),
    "not form-data": (
        f"multipart/mixed; boundary={BOUNDARY}",
        form(("f", "a.mp4", b"x")),
        "only multipart/form-data",
    ),
    "malformed": (MULTIPART, b"this is not a multipart body at all", "malformed multipart"),
    "cut short": (
        MULTIPART,
        form(("f", "a.mp4", b"x" * 5000), close=False),
        "ended before its closing boundary",
    ),
}


@pytest.mark.parametrize("case", BAD_FORMS)
async def test_bad_forms_are_refused_clearly_and_leave_nothing(stack: Start, case: str) -> None:
    analyzer, bridge = await stack()
    content_type, body, words = BAD_FORMS[case]
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        response = await http.post(
            "/api/videos", content=body, headers={"content-type": content_type}
        )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert words in response.json()["message"]
    await nothing_kept(analyzer, "nothing of a bad form is kept")


async def test_forms_over_the_limit_get_413(stack: Start) -> None:
    limit = 100_000
    analyzer, bridge = await stack(max_upload_bytes=limit)
    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        # Within the form's allowance for fields, so found while it streams.
        streamed = await http.post("/api/videos", files={"file": ("big.mp4", bytes(limit + 1))})
        # Declared far over it: refused before the body is read.
        declared = await http.post("/api/videos", files={"file": ("huge.mp4", bytes(4 * limit))})
    for response in (streamed, declared):
        assert response.status_code == 413, response.text
        assert response.json() == {
            "code": "TOO_LARGE",
            "message": f"the upload exceeds the limit of {limit} bytes",
        }
    await nothing_kept(analyzer, "nothing of an oversized form is kept")


async def test_a_slow_but_steady_upload_is_not_idle(stack: Start, clip: bytes) -> None:
    # Idleness is the gap between pieces, not the upload's duration; and the bridge passes on
    # what it has rather than waiting to fill a whole chunk (1 MiB), which to the analyzer
    # would look like a client that stopped sending.
    _, bridge = await stack(analyzer={"upload_idle_timeout_s": 2.0}, upload_idle_timeout_s=2.0)
    pieces = [clip[i : i + len(clip) // 15 + 1] for i in range(0, len(clip), len(clip) // 15 + 1)]

    async def slowly() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.2)  # 3 s in all, each gap far under the idle timeout

    async with httpx.AsyncClient(base_url=bridge.http, timeout=20) as http:
        response = await http.post(
            "/api/videos",
            params={"name": "slow.mp4"},
            content=slowly(),
            headers={"content-length": str(len(clip))},
        )
    assert response.status_code == 201, response.text
    assert response.json()["video"]["size"] == len(clip)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", None, "127.0.0.1"),  # a trusted proxy's own request
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.7, 127.0.0.2", "198.51.100.7"),  # nearest untrusted
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a proxy: the header is ignored
    ],
)
def test_client_address(peer: str, forwarded: str | None, client: str) -> None:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    scope = {"type": "http", "client": (peer, 5000), "headers": headers}
    assert client_address(scope, [ipaddress.ip_network("127.0.0.0/8")]) == client
