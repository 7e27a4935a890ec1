"""The SDK's motion settings, blocking and asyncio, against the real detector service; and
``vigil motion`` / ``vigil sources add --motion`` on top of them."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest

from detector_service.server import DetectorServer
from vigil.cli import main
from vigil.core.errors import InvalidInput
from vigil.sdk import AsyncDetectorClient, DetectorClient, MotionSettings

CLOCK = ((0.8, 0.0), (1.0, 0.0), (1.0, 0.1), (0.8, 0.1))
TREE = ((0.0, 0.5), (0.2, 0.5), (0.1, 1.0))
MOTION = MotionSettings(detect_every_frame=False, sensitivity=0.75, masks=(CLOCK, TREE))


def test_motion_settings_round_trip_the_message() -> None:
    assert MotionSettings.from_proto(MOTION.to_proto()) == MOTION
    assert MotionSettings.from_proto(MotionSettings().to_proto()) == MotionSettings()


def test_update_and_add_source_with_motion(detector_address: str) -> None:
    with DetectorClient(detector_address) as client:
        spec = client.get_source("default").spec
        assert spec.motion == MotionSettings()
        updated = client.update_source(dataclasses.replace(spec, motion=MOTION))
        assert updated.motion == MOTION
        assert client.get_source("default").spec.motion == MOTION
        # Other settings read back from the source are sent back untouched.
        again = client.update_source(dataclasses.replace(updated.spec, max_fps=5))
        assert (again.motion, again.max_fps) == (MOTION, 5.0)

        bad = MotionSettings(masks=(((0.1, 0.1), (0.2, 0.2)),))
        with pytest.raises(InvalidInput, match=r"motion\.masks\[0\] needs 3 to 64 points, got 2"):
            client.update_source(dataclasses.replace(spec, motion=bad))
        with pytest.raises(InvalidInput, match=r"motion\.sensitivity must be between 0"):
            client.add_source("x", "test_pattern", motion=MotionSettings(sensitivity=2))

        every = MotionSettings(detect_every_frame=True)
        added = client.add_source("gated", "test_pattern", motion=every)
        assert added.motion == every
        assert client.get_source("gated").spec.motion == every


async def test_async_client_motion(detector: DetectorServer) -> None:
    async with AsyncDetectorClient(f"127.0.0.1:{detector.port}") as client:
        added = await client.add_source("yard", "test_pattern", motion=MOTION)
        assert added.motion == MOTION
        spec = (await client.get_source("yard")).spec
        cleared = await client.update_source(dataclasses.replace(spec, motion=MotionSettings()))
        assert cleared.motion == MotionSettings()
        assert (await client.list_sources())[1].motion == MotionSettings()


def test_cli_motion(
    detector_address: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = ["--detector", detector_address]
    settings = tmp_path / "motion.json"
    settings.write_text(json.dumps({"sensitivity": 0.75, "masks": [CLOCK, TREE]}))
    assert main(["motion", "set", "default", str(settings), *address]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "default: detection gated by motion, sensitivity 0.75, 2 masks"
    assert out[1] == "  mask 1: 0.8,0 1,0 1,0.1 0.8,0.1"
    assert main(["motion", "show", "default", "--json", *address]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        "detect_every_frame": False,
        "sensitivity": 0.75,
        "masks": [[list(p) for p in CLOCK], [list(p) for p in TREE]],
    }

    settings.write_text('{"masks": [[[0, 0], [2, 0], [0, 1]]]}')
    assert main(["motion", "set", "default", str(settings), *address]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT: motion.masks[0]: points are normalised" in err
    settings.write_text('{"sensitivity": 0.5, "gate": true}')
    assert main(["motion", "set", "default", str(settings), *address]) == 2
    assert "cannot read motion settings" in capsys.readouterr().err

    settings.write_text('{"detect_every_frame": true}')
    add = ["sources", "add", "cam", "--kind", "test_pattern", "--motion", str(settings)]
    assert main([*add, *address]) == 0
    capsys.readouterr()
    assert main(["motion", "show", "cam", *address]) == 0
    assert capsys.readouterr().out == "cam: every frame detected, sensitivity default, 0 masks\n"
