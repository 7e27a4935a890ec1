"""Keep the C libraries under the capture (OpenCV, FFmpeg through OpenCV and PyAV) off stderr.

They write straight to file descriptor 2 from C, past Python's logging and its redaction, and
they quote the URL they were given: a camera's ``rtsp://user:password@...`` or ``?token=...``
would reach the journal or a log file verbatim (FFmpeg's ``[rtsp @ 0x..]``/``[http @ 0x..]``
lines, OpenCV's ``[ WARN ] ... cap_ffmpeg`` lines, its CAP_IMAGES "can't find starting number"
error). Their failures reach us anyway as return values and exceptions, which the capture turns
into ``CaptureError`` messages passed through ``SourceUri.redact``; so their own printing is
switched off, and forced off: an inherited ``OPENCV_FFMPEG_LOGLEVEL=56`` must not turn it back on.
"""

from __future__ import annotations

import os

# FFmpeg's AV_LOG_QUIET.
AV_LOG_QUIET = -8


def silence_native_logs() -> None:
    """Call at process start, before the first capture opens."""
    # Read by OpenCV when it loads (its own log) and at the first FFmpeg capture (FFmpeg's
    # log level as OpenCV sets it); both are set before either can happen in this process.
    os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = str(AV_LOG_QUIET)
    os.environ.pop("OPENCV_FFMPEG_DEBUG", None)
    os.environ.pop("OPENCV_VIDEOIO_DEBUG", None)
    import cv2

    # cv2 may already be imported (the capture module imports it), so also at run time.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    # PyAV is imported only with the first stream or file source: capture.py quiets it then.
