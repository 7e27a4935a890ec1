"""Engines are found by the name the settings give, in the registry of
``analyzer_service.engine``."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from analyzer_service.engine import register
from analyzer_service.engines import catalog
from analyzer_service.engines.vllm_local import LocalVllmEngine
from analyzer_service.engines.vllm_remote import RemoteVllmEngine
from analyzer_service.settings import AnalyzerSettings

# Nothing listens on the discard port: a request that got as far as the network would fail there.
NOWHERE = "http://127.0.0.1:9/v1"


def test_the_settings_name_the_engine(settings: AnalyzerSettings) -> None:
    assert catalog.names() == ["vllm", "vllm-http"]
    assert catalog.create(settings) is None  # "none": no language model
    remote = catalog.create(
        settings.model_copy(
            update={
                "engine": "vllm-http",
                "vllm_url": NOWHERE,
                "model": "served-name",
                "vllm_api_key": SecretStr("key"),
                "max_tokens": 77,
            }
        )
    )
    assert isinstance(remote, RemoteVllmEngine)
    assert (remote.base_urls, remote.model, remote.max_tokens) == (
        ["http://127.0.0.1:9"],
        "served-name",
        77,
    )


def test_an_unknown_engine_is_refused_with_the_names_known(settings: AnalyzerSettings) -> None:
    # The settings' type already refuses it; the registry says so too for settings built around it.
    with pytest.raises(ValueError, match=r"'llama'.*\['none', 'vllm', 'vllm-http'\]"):
        catalog.create(settings.model_copy(update={"engine": "llama"}))


def test_a_name_belongs_to_one_class() -> None:
    with pytest.raises(ValueError, match="taken"):
        register("vllm")(RemoteVllmEngine)
    with pytest.raises(ValueError, match="taken"):
        register("none")(LocalVllmEngine)
    # Registering a class again under its own name changes nothing.
    assert register("vllm")(LocalVllmEngine) is LocalVllmEngine
    assert catalog.names() == ["vllm", "vllm-http"]


def test_the_http_engine_takes_several_servers(settings: AnalyzerSettings) -> None:
    urls = " http://127.0.0.1:8001/v1, http://127.0.0.2:8001 ,"
    remote = catalog.create(
        settings.model_copy(update={"engine": "vllm-http", "vllm_url": urls, "model": "m"})
    )
    assert isinstance(remote, RemoteVllmEngine)
    assert remote.base_urls == ["http://127.0.0.1:8001", "http://127.0.0.2:8001"]
    with pytest.raises(ValueError, match="named twice"):
        RemoteVllmEngine(["http://127.0.0.1:8001", "http://127.0.0.1:8001/v1"], "served-name")
    with pytest.raises(ValueError, match="at least one"):
        RemoteVllmEngine([], "served-name")
