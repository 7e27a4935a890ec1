"""Roboflow models through inference-sdk: the hosted API, or a self-hosted inference server.

inference-sdk picks the protocol from the URL: Roboflow's hosted URLs speak "v0" (one POST per
frame with the key in the query string), anything else "v1" (model registry, then JSON inference).
``roboflow_api_mode`` overrides that, for a proxy in front of the hosted API.

The API key travels in URLs and bodies, and inference-sdk only half-masks it in its own error
texts, so every error leaving this module is rebuilt from scrubbed text, never chained.
inference-sdk takes 3 s to import (it pulls in supervision and scipy), so only this backend's
constructor imports it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import SecretStr

from detector_service.backends.base import BackendUnavailable, DetectorBackend, Image, register
from detector_service.detections import Detections
from detector_service.settings import DetectorSettings

log = logging.getLogger(__name__)

KEY_ENV = "VIGIL_DETECTOR_ROBOFLOW_API_KEY"
MODEL_ENV = "VIGIL_DETECTOR_ROBOFLOW_MODEL_ID"
# Key-shaped text in URLs, JSON bodies and headers, whatever key it holds: a server may echo a
# different (mistyped) key back, and inference-sdk leaves "ab***yz" of ours in its messages.
_KEY_PATTERNS = (
    re.compile(r"(api_key=)[^&\s'\"]*", re.IGNORECASE),
    re.compile(r"""(["']api_key["']\s*:\s*["'])[^"']*""", re.IGNORECASE),
    re.compile(r"(Bearer\s+)\S+", re.IGNORECASE),
)


class RoboflowError(RuntimeError):
    """A Roboflow call failed; the message is safe to log (it never holds the API key)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def scrub(text: str, secret: SecretStr | None) -> str:
    """``text`` without the API key, in any of the forms it can take on the wire."""
    if secret is not None and (key := secret.get_secret_value()):
        for form in {key, urllib.parse.quote(key, safe=""), urllib.parse.quote_plus(key)}:
            text = text.replace(form, "***")
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(r"\g<1>***", text)
    return text


class RoboflowBackend(DetectorBackend):
    def __init__(self, settings: DetectorSettings) -> None:
        from inference_sdk import InferenceConfiguration, InferenceHTTPClient
        from inference_sdk.http.entities import HTTPClientMode
        from inference_sdk.http.utils.aliases import resolve_roboflow_model_alias

        key = settings.roboflow_api_key
        if key is None or not key.get_secret_value().strip():
            raise BackendUnavailable(
                f"the roboflow backend needs a Roboflow API key: set {KEY_ENV}"
                " (or ROBOFLOW_API_KEY) in the environment or in .env"
            )
        self._key = key
        model_id = settings.roboflow_model_id.strip().strip("/")
        if not model_id:
            raise BackendUnavailable(
                f"the roboflow backend needs a model: set {MODEL_ENV} to the model's"
                " project/version, for example 'weapons-abc12/3'"
            )
        self._api_url = settings.roboflow_api_url.strip().rstrip("/")
        self._client = InferenceHTTPClient(api_url=self._api_url, api_key=key.get_secret_value())
        if settings.roboflow_api_mode == "v0":
            self._client.select_api_v0()
        elif settings.roboflow_api_mode == "v1":
            self._client.select_api_v1()
        #: "v0" (hosted API) or "v1" (inference server), as inference-sdk will speak it.
        self.api_version = "v0" if self._client.client_mode is HTTPClientMode.V0 else "v1"
        # v0 addresses the model as /{project}/{version}; fail here rather than on the first frame.
        if self.api_version == "v0" and len(resolve_roboflow_model_alias(model_id).split("/")) != 2:
            raise BackendUnavailable(
                f"{MODEL_ENV}={model_id!r} is not a Roboflow project/version"
                " such as 'weapons-abc12/3'"
            )
        self._client.configure(
            InferenceConfiguration(
                confidence_threshold=settings.confidence,
                iou_threshold=settings.nms_iou,
                # One frame per request, a batch's requests in flight together.
                max_batch_size=1,
                max_concurrent_requests=settings.roboflow_max_batch,
                client_downsizing_disabled=True,
                # Camera frames must not land in a Roboflow dataset behind the operator's back.
                disable_active_learning=True,
                api_key_transport=settings.roboflow_api_key_transport,
            )
        )
        self._model_id = model_id
        self._confidence = settings.confidence
        self._timeout_s = settings.roboflow_timeout_s
        self.model_name = f"roboflow:{model_id}"
        self.max_batch = settings.roboflow_max_batch
        log.info(
            "roboflow backend: model %s at %s (API %s)",
            model_id,
            scrub(self._api_url, key),
            self.api_version,
        )

    def __repr__(self) -> str:
        return f"RoboflowBackend(model={self._model_id!r}, api_url={scrub(self._api_url, None)!r})"

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        if not images:
            return []
        # The async client is the one whose calls can be abandoned: the sync one sets no timeout,
        # and a hung server would stall every camera behind the inference thread.
        responses = asyncio.run(self._infer(list(images)))
        return [
            self._adapt(response, width=image.shape[1], height=image.shape[0])
            for response, image in zip(responses, images, strict=True)
        ]

    async def _infer(self, images: list[Image]) -> list[Mapping[str, Any]]:
        from inference_sdk.http.errors import HTTPCallErrorError

        where = f"{self.model_name} at {scrub(self._api_url, None)}"
        try:
            raw = await asyncio.wait_for(
                self._client.infer_async(images, model_id=self._model_id), self._timeout_s
            )
        except TimeoutError:
            raise RoboflowError(f"{where}: no answer within {self._timeout_s:g} s") from None
        except HTTPCallErrorError as exc:
            message = scrub(f"{where}: HTTP {exc.status_code}: {exc.api_message}", self._key)
            raise RoboflowError(message, status_code=exc.status_code) from None
        except Exception as exc:
            # Anything else (connection errors, bad JSON) may quote a URL holding the key.
            message = scrub(f"{where}: {type(exc).__name__}: {exc}", self._key)
            raise RoboflowError(message) from None
        responses = raw if isinstance(raw, list) else [raw]
        if len(responses) != len(images) or not all(isinstance(r, dict) for r in responses):
            raise RoboflowError(f"{where}: expected {len(images)} JSON responses")
        return responses

    def _adapt(self, response: Mapping[str, Any], *, width: int, height: int) -> Detections:
        try:
            found = Detections.from_roboflow(response, model=self.model_name)
        except (KeyError, TypeError, ValueError) as exc:
            raise RoboflowError(
                f"{self.model_name}: unexpected prediction format ({type(exc).__name__}: {exc})"
            ) from None
        # Servers differ in how they read the threshold (a fraction, or percent on old hosts).
        return found.select(found.confidence >= np.float32(self._confidence)).clipped(width, height)


@register("roboflow")
def _create(settings: DetectorSettings) -> DetectorBackend:
    return RoboflowBackend(settings)
