"""Regenerate the committed gRPC code from proto/ (``make proto``), or check it is current.

    python scripts/gen_proto.py --out clients     # rewrite clients/vigil/{common,detector,analyzer}
    python scripts/gen_proto.py --check clients   # exit 1 when the committed code is stale

Generation runs ``buf generate`` into a scratch folder, then adds the ``__init__.py`` files that
make the generated modules ordinary packages.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Top-level proto packages under proto/vigil/; each becomes clients/vigil/<name>/.
PACKAGES = ("common", "detector", "analyzer")


def generate(dest: pathlib.Path) -> None:
    """Write the generated tree (``vigil/<pkg>/v1/...``) under ``dest``."""
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        ["buf", "generate", "--template", "buf.gen.yaml", "-o", str(dest)],
        cwd=ROOT,
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    generated = dest / "clients" / "vigil"
    for package in PACKAGES:
        for folder in [
            generated / package,
            *(p for p in (generated / package).rglob("*") if p.is_dir()),
        ]:
            (folder / "__init__.py").write_text('"""Generated from proto/ by `make proto`."""\n')


def tree(root: pathlib.Path) -> dict[str, pathlib.Path]:
    return {
        str(p.relative_to(root)): p
        for package in PACKAGES
        for p in sorted((root / package).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=pathlib.Path, help="folder holding the vigil package")
    mode.add_argument("--check", type=pathlib.Path, help="folder holding the vigil package")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        fresh_root = pathlib.Path(tmp) / "clients" / "vigil"
        fresh = tree(fresh_root)
        if args.out is not None:
            target = args.out / "vigil"
            for package in PACKAGES:
                shutil.rmtree(target / package, ignore_errors=True)
                shutil.copytree(fresh_root / package, target / package)
            print(f"generated {len(fresh)} files under {target}")
            return 0
        committed = tree(args.check / "vigil")
        stale = sorted(
            name
            for name in fresh.keys() | committed.keys()
            if name not in fresh
            or name not in committed
            or not filecmp.cmp(fresh[name], committed[name], shallow=False)
        )
        if stale:
            print("generated code is stale; run `make proto` and commit:", *stale, sep="\n  ")
            return 1
        print(f"generated code is current ({len(fresh)} files)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
