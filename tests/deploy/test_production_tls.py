"""The production overlay's TLS settings are ones the services accept: rendered as `make lint`
renders them, with each pod's /etc/vigil/tls holding what cert-manager writes there (tls.crt,
tls.key, ca.crt; made by the test), every service's and caller's settings load, TLS on, mutual
between the services, with the plaintext health port the probes ask."""

from __future__ import annotations

import importlib.util
import pathlib
import types

import pytest

from analyzer_service.settings import AnalyzerSettings
from bridge.settings import BridgeSettings
from detector_service.settings import DetectorSettings
from tests.vigil.certs import Authority, write_private

REPO = pathlib.Path(__file__).resolve().parents[2]
MOUNT = "/etc/vigil/tls/"


def script(name: str) -> types.ModuleType:
    """A module of scripts/ (not a package: loaded from its file, as `make lint` runs it)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def tls_environment(tmp_path: pathlib.Path) -> dict[str, dict[str, str]]:
    """Each container's TLS and health-port variables, its mount moved to a directory of its own
    holding a certificate from one CA."""
    rules, renderer = script("deploy_tls_rules"), script("kustomize_render")
    ca = Authority("vigil-ca")
    objects = renderer.render(REPO / "deploy" / "k8s" / "overlays" / "production", examples=True)
    found = {}
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            env = rules.environment(container, objects)
            wanted = {k: v for k, v in env.items() if v and ("_TLS_" in k or "HEALTH_PORT" in k)}
            if not wanted:
                continue
            mount = tmp_path / container["name"]
            ca.issue(container["name"], server=True).write(mount, "tls")
            write_private(mount / "ca.crt", ca.cert_pem)
            found[rules.module(container)] = {
                k: v.replace(MOUNT, f"{mount}/") for k, v in wanted.items()
            }
    return found


def test_every_service_loads_the_overlays_tls_settings(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout's
    found = tls_environment(tmp_path)
    assert set(found) == {"detector_service", "analyzer_service", "bridge"}
    for variables in found.values():
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    detector, analyzer, bridge = DetectorSettings(), AnalyzerSettings(), BridgeSettings()
    for service in (detector, analyzer):
        assert service.tls is not None
        assert service.tls.mutual
        assert service.health_port not in (None, service.port)
    assert (detector.health_port, analyzer.health_port) == (50061, 50062)
    for client in (detector.analyzer_tls, analyzer.detector_tls, bridge.backend_tls):
        assert client is not None
        assert None not in (client.ca, client.cert, client.key)
        assert client.ca is not None
        assert client.ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
