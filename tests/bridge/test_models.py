"""The HTTP models mirror the SDK's values: a field that drifts from the SDK's is refused at
import, and conversion copies the mirrored fields as they are."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bridge.models import ErrorInfo, Video, mirrors
from vigil import sdk
from vigil.analyzer.v1 import analyzer_service_pb2 as apb


def test_a_field_whose_type_drifted_from_the_sdks_is_refused() -> None:
    with pytest.raises(TypeError, match=r"Drifted\.size is not Video\.size"):

        @mirrors(sdk.Video)
        class Drifted(BaseModel):
            id: str
            size: str


def test_a_field_the_sdk_does_not_have_is_refused_unless_converted() -> None:
    with pytest.raises(TypeError, match=r"Extra\.colour is not ErrorInfo\.colour"):

        @mirrors(sdk.ErrorInfo)
        class Extra(BaseModel):
            code: str
            colour: str

    @mirrors(sdk.ErrorInfo, converted={"colour"})
    class Converted(BaseModel):
        code: str
        colour: str

    assert set(Converted.model_fields) == {"code", "colour"}


def test_a_video_keeps_the_sdks_fields_and_the_apis_time_format() -> None:
    message = apb.Video(id="v1", name="lobby.mp4", size=10, fps=15.0, codec="h264")
    message.uploaded_at.FromSeconds(1_735_732_800)
    message.uploaded_at.nanos = 123_456_789
    video = Video.from_sdk(sdk.Video.from_proto(message))
    assert video.model_dump() == {
        "id": "v1", "name": "lobby.mp4", "size": 10, "sha256": "", "duration_s": 0.0,
        "fps": 15.0, "width": 0, "height": 0, "frame_count": 0, "codec": "h264",
        "uploaded_at": "2025-01-01T12:00:00.123456Z",
    }  # fmt: skip
    assert ErrorInfo.from_sdk(sdk.ErrorInfo("BUSY", "later", retryable=True)).retryable
