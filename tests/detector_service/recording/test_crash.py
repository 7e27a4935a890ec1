"""A recorder killed mid-segment: what reached the disk is recovered into the index."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import av
import pytest

from detector_service.recording import SegmentIndex, SegmentWriter
from vigil.bench.rtsp import RtspCamera

ROOT = pathlib.Path(__file__).resolve().parents[3]
FPS = 15
RECORDER = """
import pathlib, sys
from detector_service.recording import SegmentIndex, SegmentWriter
from tests.detector_service.recording.media import open_rtsp

folder = pathlib.Path(sys.argv[1])
writer = SegmentWriter(SegmentIndex(folder / "index.db"), folder / "segments", "cam0", segment_s=60)
with open_rtsp(sys.argv[2]) as container:
    stream = container.streams.video[0]

    def packets():
        for n, packet in enumerate(container.demux(stream)):
            if n == 3 * 15:
                print("RECORDING", flush=True)
            yield packet

    writer.record(stream, packets())
"""


def test_a_killed_recorder_leaves_a_segment_that_recovery_indexes(
    rtsp_camera: RtspCamera, tmp_path: pathlib.Path
) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'clients'}"}
    recorder = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(tmp_path), rtsp_camera.url("cam0")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert recorder.stdout is not None
        assert recorder.stdout.readline().strip() == "RECORDING"
    finally:
        recorder.send_signal(signal.SIGKILL)
        recorder.wait()
    index = SegmentIndex(tmp_path / "index.db")
    # The open segment is not part of the recording until recovered.
    assert index.all_segments("cam0") == []
    [open_row] = index.unfinished("cam0")

    writer = SegmentWriter(index, tmp_path / "segments", "cam0")
    [recovered] = writer.recover()

    assert index.unfinished("cam0") == []
    assert index.all_segments("cam0") == [recovered]
    # Never later than the open row said, and ending before the file's last write.
    assert recovered.start <= open_row.start
    assert recovered.end <= recovered.path.stat().st_mtime
    with av.open(str(recovered.path)) as container:
        frames = list(container.decode(video=0))
    # Three seconds were received, a keyframe every second: the fragments completed before the
    # kill (at least one GOP) are there, the one being written is not.
    assert FPS <= len(frames) < 3 * FPS
    assert recovered.duration == pytest.approx(len(frames) / FPS, abs=1e-3)
    assert recovered.bytes == recovered.path.stat().st_size
    index.close()
