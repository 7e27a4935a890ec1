"""A camera recorded by a real detector service within seconds, for analyses of recordings.

A GStreamer RTSP camera (a moving ball, 320x240, a keyframe a second) is added to the detector
as an always-on stream source; recording is cut into 2 s segments (the detector's
``recording_segment_s`` must be set to ``SEGMENT_S``), so a few seconds later a range of it can
be exported. Blocking (the SDK's blocking client): async tests call ``record`` in a thread.
"""

from __future__ import annotations

import time

from vigil.bench.rtsp import RtspCamera
from vigil.core.errors import NotFound
from vigil.sdk import DetectorClient

SEGMENT_S = 2.0
# Seconds of recording a test waits for; the export then covers at least this much.
RECORDED_S = 4.0
WAIT_S = 90.0


def camera(mount: str = "gate") -> RtspCamera:
    return RtspCamera((mount,), width=320, height=240, fps=10, keyframe_s=1.0)


def record(detector_address: str, camera_url: str, source_id: str = "gate") -> tuple[float, float]:
    """Add the camera as ``source_id`` and wait until ``RECORDED_S`` of it can be exported;
    returns that range (seconds since the epoch)."""
    with DetectorClient(detector_address) as client:
        added = time.time()
        client.add_source(source_id, "stream", camera_url)
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                info = client.export(source_id, added, time.time()).info
                if info.end - info.start >= RECORDED_S:
                    return info.start, info.end
            except NotFound:
                pass  # no segment finished yet
            if time.monotonic() > deadline:
                raise AssertionError(f"{source_id} was not recorded within {WAIT_S:g} s")
            time.sleep(0.5)
