"""Incident evidence packages end to end: a real detector with the test ONNX model sees a knife on
a real RTSP camera that it records, the incident exports over gRPC (the CLI and the SDK) and
REST, and ``vigil verify`` accepts the package and names every change made to it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import pathlib
import stat
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
import uvicorn

from bridge.app import create_app
from bridge.server import config, listen
from bridge.settings import BridgeSettings
from detector_service.evidence import verdict_json
from detector_service.evidence_key import GENERATED_NAME, load_key
from detector_service.server import DetectorServer, serve
from detector_service.settings import DetectorSettings
from tests.bridge.conftest import free_port
from tests.detector_service.backends.test_onnx import build_model
from tests.detector_service.recording.media import decoded
from tests.vigil.conftest import jpeg, knife
from vigil.bench.rtsp import RtspCamera
from vigil.cli import main
from vigil.common.v1 import common_pb2 as cpb
from vigil.core.errors import InvalidInput, NotFound
from vigil.detector.v1 import detector_service_pb2 as pb
from vigil.sdk import AsyncDetectorClient, Incident

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

FILES = {"clip.mp4", "snapshot.jpg", "incident.json", "detections.json", "verdict.json"}


@dataclass
class Scene:
    detector: DetectorServer
    http: httpx.AsyncClient
    incident: Incident
    package: pathlib.Path
    public_key: str
    key_file: pathlib.Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.detector.port}"


async def cli(*args: str) -> int:
    # On a thread: the blocking client calls a detector served by this event loop.
    return await asyncio.to_thread(main, list(args))


async def until(condition: Callable[[], bool], limit_s: float = 30) -> None:
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 - polling the recording on disk
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scene]:
    """One closed incident of a recorded camera, exported by `vigil incidents export`."""
    root = tmp_path_factory.mktemp("evidence")
    settings = DetectorSettings(
        port=0,
        backend="onnx",
        onnx_model_path=build_model(root / "tiny.onnx"),
        confidence=0.4,
        weapon_classes=["knife"],
        data_dir=root / "data",
        recording_segment_s=1.0,
        incident_recording_pre_s=1.0,
        incident_recording_post_s=1.0,
    )
    # A still blue picture that the test model sees as a knife: an incident opens at once.
    with RtspCamera(
        ("door",), width=320, height=240, fps=10, keyframe_s=1.0, pattern="blue"
    ) as cam:
        detector = await serve(settings)
        bridge_settings = BridgeSettings(
            port=0,
            detector_address=f"127.0.0.1:{detector.port}",
            analyzer_address=f"127.0.0.1:{free_port()}",
        )
        sock = listen(bridge_settings)
        options = {"loop": "none", "log_level": "warning", "timeout_graceful_shutdown": 2}
        bridge = uvicorn.Server(config(create_app(bridge_settings), bridge_settings, **options))
        task = asyncio.create_task(bridge.serve(sockets=[sock]))
        try:
            async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
                await client.add_source("door", "stream", cam.url())
                index = detector.recorder.index
                # Closed segments past the opening, then the source goes: the incident closes.
                await until(
                    lambda: bool(index.all_segments("door")) and detector.incidents.opened > 0
                )
                started = time.time()
                await until(lambda: index.all_segments("door")[-1].end > started + 1.5)
                await client.remove_source("door")
                await until(lambda: not index.unfinished("door") and bridge.started)
                [incident] = (await client.list_incidents()).items
            assert incident.closed_at is not None
            assert incident.recording is not None
            package = root / "package.zip"
            address = f"127.0.0.1:{detector.port}"
            assert (
                await cli(
                    "incidents", "export", incident.id, "-o", str(package), "--detector", address
                )
                == 0
            )
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                key_file = settings.data_dir / GENERATED_NAME
                key = load_key(settings).public.hex()
                yield Scene(detector, http, incident, package, key, key_file)
        finally:
            bridge.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            await detector.stop(0)


def rewrite(
    source: pathlib.Path, target: pathlib.Path, change: Callable[[str, bytes], bytes | None]
) -> pathlib.Path:
    """A copy of a package with each member through ``change`` (None drops it)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info, data)
    return target


async def verify(
    package: pathlib.Path, key: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    code = await cli("verify", str(package), "--public-key", key)
    return code, capsys.readouterr().out


async def test_the_package_holds_the_incident_and_verifies(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with zipfile.ZipFile(scene.package) as package:
        assert set(package.namelist()) == FILES | {"manifest.json", "manifest.sig"}
        manifest = json.loads(package.read("manifest.json"))
        record = json.loads(package.read("incident.json"))
        clip = package.read("clip.mp4")
        opening = json.loads(package.read("detections.json"))
        snapshot = package.read("snapshot.jpg")
        verdict = json.loads(package.read("verdict.json"))
    incident = scene.incident
    assert (record["id"], record["source_id"], record["class_name"]) == (
        incident.id,
        "door",
        "knife",
    )
    assert record["opened_at"].endswith("Z")
    assert record["closed_at"].endswith("Z")
    assert record["peak_confidence"] == pytest.approx(incident.peak_confidence, abs=1e-5)
    assert [d["class_name"] for d in record["detections"]] == ["knife"]
    assert opening["frames"][0]["detections"] == record["detections"]
    # Then the recorded frames of the clip's range, the knife among them.
    recorded = opening["frames"][1:]
    assert recorded
    assert all(f["at"].endswith("Z") and (f["width"], f["height"]) == (320, 240) for f in recorded)
    assert any(d["class_name"] == "knife" for f in recorded for d in f["detections"])
    # No analyzer here: not verified, and the package says so.
    assert verdict == {
        "verification_state": "unspecified",
        "verification": None,
        "review": None,
        "false_alarm": False,
        "rule_id": None,
        "rule_reason": None,
    }
    assert snapshot.startswith(b"\xff\xd8")
    # The clip is the incident's recording range, the camera's stream remuxed: it plays.
    assert incident.recording is not None
    assert incident.recording.end is not None
    assert manifest["clip"]["origin"].startswith("recording")
    assert len(decoded(clip)) >= 10
    assert manifest["format"] == "vigil-evidence/1"
    assert manifest["incident_id"] == incident.id
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == FILES
    assert listed["clip.mp4"]["sha256"] == hashlib.sha256(clip).hexdigest()
    assert listed["clip.mp4"]["bytes"] == len(clip)

    code, out = await verify(scene.package, scene.public_key, capsys)
    assert code == 0, out
    assert out.startswith(f"VALID: incident {incident.id}, 5 files unchanged")
    # The key from the detector's own key file works as well as its hex.
    assert stat.S_IMODE(scene.key_file.stat().st_mode) == 0o600
    assert (await verify(scene.package, str(scene.key_file), capsys))[0] == 0


async def test_one_changed_byte_of_the_clip_is_named(
    scene: Scene, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def flip(name: str, data: bytes) -> bytes:
        if name != "clip.mp4":
            return data
        return data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]

    code, out = await verify(
        rewrite(scene.package, tmp_path / "p.zip", flip), scene.public_key, capsys
    )
    assert code == 1
    assert out.splitlines()[0].startswith("INVALID")
    [problem] = out.splitlines()[1:]
    assert problem.strip().startswith("clip.mp4: changed")


async def test_a_changed_manifest_fails_its_signature(
    scene: Scene, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forger who changes the clip and writes its new hash into the manifest."""
    forged_clip = b"not the camera's video"

    def forge(name: str, data: bytes) -> bytes:
        if name == "clip.mp4":
            return forged_clip
        if name == "manifest.json":
            manifest = json.loads(data)
            for entry in manifest["files"]:
                if entry["name"] == "clip.mp4":
                    entry["sha256"] = hashlib.sha256(forged_clip).hexdigest()
                    entry["bytes"] = len(forged_clip)
            return json.dumps(manifest).encode()
        return data

    code, out = await verify(
        rewrite(scene.package, tmp_path / "p.zip", forge), scene.public_key, capsys
    )
    assert code == 1
    [problem] = out.splitlines()[1:]
    assert problem.strip().startswith("manifest.json: the signature does not match")


async def test_another_public_key_is_refused(
    scene: Scene, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pem"
    assert await cli("keys", "generate", str(other)) == 0
    assert stat.S_IMODE(other.stat().st_mode) == 0o600
    capsys.readouterr()
    assert await cli("keys", "public", str(other), "--json") == 0
    other_key = json.loads(capsys.readouterr().out)["public_key"]
    assert other_key != scene.public_key
    code, out = await verify(scene.package, other_key, capsys)
    assert code == 1
    [problem] = out.splitlines()[1:]
    assert "the signature does not match" in problem
    # Not a key at all is a usage error, not a verdict.
    assert await cli("verify", str(scene.package), "--public-key", "abc") == 2


async def test_missing_and_added_files_are_named(
    scene: Scene, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def drop(name: str, data: bytes) -> bytes | None:
        return None if name == "snapshot.jpg" else data

    package = rewrite(scene.package, tmp_path / "p.zip", drop)
    with zipfile.ZipFile(package, "a") as more:
        more.writestr("notes.txt", b"added later")
    code, out = await verify(package, scene.public_key, capsys)
    assert code == 1
    assert sorted(line.strip() for line in out.splitlines()[1:]) == [
        "notes.txt: added (not in the manifest)",
        "snapshot.jpg: missing",
    ]
    assert await cli("verify", str(tmp_path / "nothing.zip"), "--public-key", scene.public_key) == 2


async def test_rest_download_is_the_same_package(scene: Scene) -> None:
    response = await scene.http.get(f"/api/incidents/{scene.incident.id}/evidence.zip")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.headers["x-evidence-public-key"] == scene.public_key
    assert f"incident-{scene.incident.id}.zip" in response.headers["content-disposition"]
    async with AsyncDetectorClient(scene.address) as client:
        info = await client.export_incident(scene.incident.id, scene.package.with_name("sdk.zip"))
    assert info.public_key == scene.public_key
    # Each export is made (and dated) anew: the files match, the manifest's time may not.
    with (
        zipfile.ZipFile(io.BytesIO(response.content)) as rest,
        zipfile.ZipFile(scene.package.with_name("sdk.zip")) as grpc_package,
    ):
        for name in FILES:
            assert rest.read(name) == grpc_package.read(name), name
    assert (
        response.headers["x-manifest-sha256"]
        == hashlib.sha256(
            zipfile.ZipFile(io.BytesIO(response.content)).read("manifest.json")
        ).hexdigest()
    )


async def test_an_unknown_incident_is_not_found(scene: Scene) -> None:
    async with AsyncDetectorClient(scene.address) as client:
        with pytest.raises(NotFound):
            await client.export_incident("nope", scene.package.with_name("nope.zip"))
    assert not scene.package.with_name("nope.zip").exists()
    response = await scene.http.get("/api/incidents/nope/evidence.zip")
    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND")


async def test_an_unrecorded_incident_exports_without_a_clip(
    scene: Scene, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A source the service does not record (none named "lobby" is): its tracker opens one.
    start = time.time_ns()
    for n in range(3):
        scene.detector.incidents.observe("lobby", [knife()], jpeg(), start + n * 100_000_000)
    async with AsyncDetectorClient(scene.address) as client:
        async with asyncio.timeout(10):
            while not (found := (await client.list_incidents("lobby")).items):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        [incident] = found
        assert incident.recording is None
        info = await client.export_incident(incident.id, tmp_path / "lobby.zip")
    with zipfile.ZipFile(tmp_path / "lobby.zip") as package:
        assert set(package.namelist()) == FILES - {"clip.mp4"} | {"manifest.json", "manifest.sig"}
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["clip"]["file"] is None
    assert "not recorded" in manifest["clip"]["note"]
    code, out = await verify(pathlib.Path(info.path or ""), scene.public_key, capsys)
    assert (code, out.split(",")[0]) == (0, f"VALID: incident {incident.id}")


async def test_the_key_file_must_be_private(tmp_path: pathlib.Path) -> None:
    key = tmp_path / "key.pem"
    assert await cli("keys", "generate", str(key)) == 0
    settings = DetectorSettings(data_dir=tmp_path / "data", evidence_key_file=key)
    assert load_key(settings).path == key
    key.chmod(0o640)
    with pytest.raises(InvalidInput, match="chmod 600"):
        load_key(settings)
    # Without a key file the service makes its own once, private, and keeps it.
    own = DetectorSettings(data_dir=tmp_path)
    first = load_key(own)
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert load_key(own).public == first.public


async def test_an_unrecorded_source_gives_its_annotated_clip(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = DetectorSettings(
        port=0,
        backend="none",
        data_dir=tmp_path,
        recording=False,
        incident_clips=True,
        incident_clip_post_s=0.3,
    )
    detector = await serve(settings)
    try:
        start = time.time_ns()
        # A knife in three frames opens it; the frames after it finish the clip, the last one
        # (past the closing delay) closes it.
        for n in [*range(10), 100]:
            found = [knife()] if n < 3 else []
            detector.incidents.observe("hall", found, jpeg(n % 10 * 20), start + n * 100_000_000)
        async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:

            async def with_clip() -> Incident | None:
                page = (await client.list_incidents("hall")).items
                return page[0] if page and page[0].clip_path else None

            async with asyncio.timeout(10):
                # The clip is written on a thread of its own.
                while (incident := await with_clip()) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            info = await client.export_incident(incident.id, tmp_path / "hall.zip")
            clip = await asyncio.to_thread(pathlib.Path(incident.clip_path).read_bytes)
    finally:
        await detector.stop(0)
    with zipfile.ZipFile(tmp_path / "hall.zip") as package:
        assert "clip.avi" in package.namelist()
        assert "clip.mp4" not in package.namelist()
        manifest = json.loads(package.read("manifest.json"))
        assert package.read("clip.avi") == clip
    assert manifest["clip"]["file"] == "clip.avi"
    code, out = await verify(tmp_path / "hall.zip", info.public_key, capsys)
    assert code == 0, out
    assert "clip.avi" in out


async def test_the_verdict_file_carries_the_models_answer_and_the_operators_review() -> None:
    incident = pb.Incident(
        id="i",
        verification_state=pb.VERIFICATION_STATE_DONE,
        verification=cpb.Verification(
            verdict=cpb.VERDICT_REJECTED,
            sees="a blue square",
            threat_level=0,
            reason="no weapon",
            model="tiny",
            model_seconds=0.25,
        ),
        review=pb.Review(decision=pb.REVIEW_DECISION_CONFIRMED, note="it was", reviewer="ann"),
        false_alarm=False,
    )
    assert verdict_json(incident) == {
        "verification_state": "done",
        "verification": {
            "verdict": "rejected",
            "sees": "a blue square",
            "threat_level": 0,
            "reason": "no weapon",
            "model": "tiny",
            "model_seconds": 0.25,
        },
        "review": {
            "decision": "confirmed",
            "note": "it was",
            "reviewer": "ann",
            "reviewed_at": None,
        },
        "false_alarm": False,
        "rule_id": None,
        "rule_reason": None,
    }
