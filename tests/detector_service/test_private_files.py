"""Files that may hold camera passwords or what the cameras saw are for the service's user only."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detector_service.incidents import clips
from detector_service.server import serve
from detector_service.settings import DetectorSettings
from detector_service.sources import load_sources_file
from vigil.core.errors import InvalidInput

REPO = pathlib.Path(__file__).resolve().parents[2]
SOURCES = '[[sources]]\nid = "lobby"\nkind = "stream"\nuri = "rtsp://admin:hunter2@127.0.0.1:1/s"\n'


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("readable", [0o644, 0o640, 0o604, 0o660, 0o620], ids=oct)
def test_a_sources_file_others_can_reach_is_refused(tmp_path: pathlib.Path, readable: int) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    path.chmod(readable)
    with pytest.raises(InvalidInput, match=f"sources file {path} .*chmod 600 {path}"):
        load_sources_file(path)
    path.chmod(0o600)
    assert [s.id for s in load_sources_file(path)] == ["lobby"]
    path.chmod(0o400)
    assert [s.id for s in load_sources_file(path)] == ["lobby"]


def test_the_service_stops_at_start_with_one_line_naming_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(SOURCES)
    path.chmod(0o644)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")]),
        "VIGIL_DETECTOR_PORT": "0",
        "VIGIL_DETECTOR_BACKEND": "none",
        "VIGIL_DETECTOR_SOURCES_FILE": str(path),
        "VIGIL_DETECTOR_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "detector_service"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0]
    assert f"chmod 600 {path}" in lines[0]
    assert "hunter2" not in done.stderr


async def test_the_data_dir_and_incident_store_are_created_owner_only(
    tmp_path: pathlib.Path,
) -> None:
    data = tmp_path / "new" / "detector"
    server = await serve(DetectorSettings(port=0, backend="none", data_dir=data))
    try:
        assert mode(data) == 0o700
        files = sorted(p.name for p in data.iterdir())
        assert "incidents.sqlite3" in files
        for name in files:  # the databases and their -wal/-shm files; the recording's folders
            assert mode(data / name) == (0o700 if (data / name).is_dir() else 0o600), name
    finally:
        await server.stop(0)


async def test_an_existing_open_data_dir_and_store_are_tightened(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "detector"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    db = data / "incidents.sqlite3"
    db.touch()
    db.chmod(0o644)
    server = await serve(DetectorSettings(port=0, backend="none", data_dir=data))
    try:
        assert mode(data) == 0o700
        assert mode(db) == 0o600
    finally:
        await server.stop(0)


def test_a_clip_is_written_owner_only(tmp_path: pathlib.Path) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    assert ok
    path = tmp_path / "clips" / "lobby" / "incident.avi"
    clips.write_clip(path, [(n * 100_000_000, jpeg.tobytes()) for n in range(5)])
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
