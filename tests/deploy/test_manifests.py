"""The shipped compose file and Kubernetes overlays pass ``scripts/check_deploy.py``, and the check
catches what matters; the offline renderer agrees with kustomize.

The checker runs as ``make lint`` runs it (a subprocess, its exit status and its lines). Each
broken tree is the shipped deploy/ with a few changes in different objects, each of which must be
reported on its own.
"""

from __future__ import annotations

import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())


def check(directory: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_deploy.py"), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )


def broken(tmp_path: pathlib.Path, changes: list[tuple[str, str, str]]) -> pathlib.Path:
    directory = tmp_path / "deploy"
    shutil.copytree(DEPLOY, directory, ignore=shutil.ignore_patterns("*.env", "*.pem"))
    for name, pattern, replacement in changes:
        path = directory / name
        text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.M)
        assert count == 1, (name, pattern)
        path.write_text(text)
    return directory


def test_the_shipped_deployment_passes() -> None:
    result = check(DEPLOY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(OVERLAYS) == {"single-node", "production"}
    assert "production, single-node" in result.stdout


# (file, pattern, replacement, what the checker must say) per planted fault.
SCHEMA_FAULTS = [
    ("k8s/base/bridge.yaml", r"^  replicas: 2$", "  replica: 2", "'replica' was unexpected"),
    (
        "k8s/base/detector.yaml",
        r"containerPort: 50051",
        'containerPort: "50051"',
        "'50051' is not of type 'integer'",
    ),
    ("k8s/base/vllm.yaml", r"^kind: StatefulSet$", "kind: StatefulSett", "no schema"),
]
RULE_FAULTS = [
    (
        "k8s/base/config.yaml",
        r"VIGIL_ANALYZER_DATA_DIR:",
        "VIGIL_ANALYZER_DATADIR:",
        "VIGIL_ANALYZER_DATADIR is no setting of AnalyzerSettings",
    ),
    (
        "k8s/base/analyzer.yaml",
        r"readinessProbe:\n            grpc: \{port: 50052\}",
        "readinessProbe:\n            tcpSocket: {port: 50052}",
        "readinessProbe is not a gRPC health probe of :50052",
    ),
    (
        "k8s/base/detector.yaml",
        r"key: VIGIL_DETECTOR_TOKEN",
        "key: VIGIL_DETECTOR_TOKN",
        "reads key VIGIL_DETECTOR_TOKN that Secret vigil-secrets lacks",
    ),
    (
        "k8s/base/disruption.yaml",
        r"component: bridge\}\n---",
        "component: brige}\n---",
        "Deployment/vigil-bridge: no PodDisruptionBudget",
    ),
    (
        "k8s/base/detector.yaml",
        r"secretName: vigil-evidence-key,",
        "secretName: vigil-evidence-kee,",
        "volume evidence-secret needs Secret vigil-evidence-kee",
    ),
    (
        "k8s/base/vllm.yaml",
        r"^  clusterIP: None\n",
        "",
        "StatefulSet/vllm: its serviceName is no headless Service",
    ),
]
COMPOSE_FAULTS = [
    (
        "compose/compose.yaml",
        r"^  stop_grace_period: 20s$",
        "  stop_grace_periods: 20s",
        "not valid compose",
    ),
    (
        "compose/compose.yaml",
        r"VIGIL_BRIDGE_GRACE_S:",
        "VIGIL_BRIDGE_GRACE:",
        "VIGIL_BRIDGE_GRACE is no setting of BridgeSettings",
    ),
    ("compose/env/vigil.env.example", r"^VIGIL_ANALYZER_TOKEN=", "VIGIL_TOKEN=", "VIGIL_TOKEN"),
]
RENDER_FAULTS = [
    (
        "k8s/overlays/production/kustomization.yaml",
        r"^namespace: vigil$",
        "namespace: vigil\ncommonLabels: {team: video}",
        "fields this renderer does not reproduce: ['commonLabels']",
    ),
    (
        "k8s/overlays/single-node/kustomization.yaml",
        r"path: /spec/rules/0/host",
        "path: /spec/rule/0/host",
        "JSON patch replace /spec/rule/0/host: no such place",
    ),
]
PRODUCTION = "k8s/overlays/production/patches.yaml"
TLS_FAULTS = [
    (
        PRODUCTION,
        r"^  VIGIL_DETECTOR_TLS_CLIENT_CA_FILE: .*\n",
        "",
        "VIGIL_DETECTOR_TLS_CLIENT_CA_FILE unset: mutual TLS between machines wanted",
    ),
    (
        PRODUCTION,
        r"^  VIGIL_DETECTOR_HEALTH_PORT: .*\n",
        "",
        "serves TLS without VIGIL_DETECTOR_HEALTH_PORT",
    ),
    (
        PRODUCTION,
        r"VIGIL_BRIDGE_BACKEND_TLS_CA_FILE: /etc/vigil/tls/ca.crt",
        "VIGIL_BRIDGE_BACKEND_TLS_CA_FILE: /etc/vigil/tls/ca.pem",
        "VIGIL_BRIDGE_BACKEND_TLS_CA_FILE=/etc/vigil/tls/ca.pem is no key of a Secret mounted",
    ),
    (
        PRODUCTION,
        r"(^  VIGIL_ANALYZER_DETECTOR_TLS_\w+: .*\n)+",
        "",
        "container analyzer: calls detector_service in plaintext, but it serves TLS",
    ),
    (
        "k8s/base/config.yaml",
        r"VIGIL_DETECTOR_ANALYZER_URL: dns:///vigil-analyzer:50052",
        "VIGIL_DETECTOR_ANALYZER_URL: dns:///analyzer.vigil.svc:50052",
        "ANALYZER_URL names analyzer.vigil.svc, which Certificate/vigil-analyzer-tls does not",
    ),
    (
        PRODUCTION,
        r"readinessProbe:\n            grpc: \{port: 50062\}",
        "readinessProbe:\n            grpc: {port: 50052}",
        "readinessProbe is not a gRPC health probe of the plaintext health port :50062",
    ),
    (
        "k8s/base/network.yaml",
        r"^        - \{protocol: TCP, port: 9102\}$",
        "        - {protocol: TCP, port: 9102}\n        - {protocol: TCP, port: 50062}",
        "NetworkPolicy/vigil-analyzer opens the plaintext health port :50062",
    ),
    (
        "k8s/base/bridge.yaml",
        r"secretName: vigil-bridge-tls,",
        "secretName: vigil-bridge-tsl,",
        "Deployment/vigil-bridge: volume tls needs Secret vigil-bridge-tsl",
    ),
    (
        "k8s/overlays/production/kustomization.yaml",
        r"path: /spec/tls/0/hosts/0\n        value: vigil.example.org",
        "path: /spec/tls/0/hosts/0\n        value: vigil.example.net",
        "Ingress/vigil: host vigil.example.org is not served over TLS",
    ),
    (
        "k8s/overlays/production/certificates.yaml",
        r"^    - vigil-analyzer$",
        "    - vigil-analyser",
        "VIGIL_BRIDGE_ANALYZER_ADDRESS names vigil-analyzer, which Certificate/vigil-analyzer-tls",
    ),
    ("compose/compose.tls.yaml", r"^  bridge-2: \*bridge-tls\n", "", "leaves out bridge-2"),
    (
        "compose/compose.tls.yaml",
        r"VIGIL_DETECTOR_TLS_CLIENT_CA_FILE:",
        "VIGIL_DETECTOR_TLS_CA_FILE:",
        "VIGIL_DETECTOR_TLS_CA_FILE is no setting of DetectorSettings",
    ),
]

# Apart from TLS_FAULTS: a caller in plaintext skips the hostname check planted there.
CALLER_FAULTS = [
    (
        PRODUCTION,
        r"(^  VIGIL_DETECTOR_ANALYZER_TLS_\w+: .*\n)+",
        "",
        "container detector: calls analyzer_service in plaintext, but it serves TLS",
    ),
    (
        "k8s/base/network.yaml",
        r"^        - podSelector:\n            matchLabels: \{app.kubernetes.io/name: vigil, "
        r"app.kubernetes.io/component: detector\}\n",
        "",
        "vigil-analyzer) lets a detector_service pod reach :50052",
    ),
    (
        "k8s/base/detector.yaml",
        r"value: \$\(POD_NAME\).vigil-detector.\$\(POD_NAMESPACE\).svc:50051",
        "value: $(POD_NAME).vigil-detector:50051",
        "ADVERTISE_ADDRESS names vigil-detector-0.vigil-detector, which "
        "Certificate/vigil-detector-tls does not",
    ),
]


@pytest.mark.parametrize(
    "faults",
    [SCHEMA_FAULTS, RULE_FAULTS, COMPOSE_FAULTS, RENDER_FAULTS, TLS_FAULTS, CALLER_FAULTS],
    ids=["schema", "rules", "compose", "render", "tls", "callers"],
)
def test_each_planted_fault_is_reported(
    tmp_path: pathlib.Path, faults: list[tuple[str, str, str, str]]
) -> None:
    result = check(broken(tmp_path, [(f, p, r) for f, p, r, _ in faults]))
    assert result.returncode == 1, result.stdout + result.stderr
    for *_, message in faults:
        assert message in result.stdout, (message, result.stdout)


def rendered_by_us(overlay: pathlib.Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "kustomize_render.py"), str(overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def by_identity(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            # kustomize folds long base64 lines; the values are what count.
            obj["data"] = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
        meta = obj["metadata"]
        found[obj["kind"], meta.get("namespace", ""), meta["name"]] = obj
    return found


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kustomize(tmp_path: pathlib.Path, overlay: str) -> None:
    # Both render the same copy, with the secret templates as the secrets files.
    k8s = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", k8s, ignore=shutil.ignore_patterns("*.env", "*.pem"))
    for example in (k8s / "overlays" / overlay / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    target = k8s / "overlays" / overlay
    kustomized = subprocess.run(
        ["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True
    ).stdout
    theirs = by_identity([d for d in yaml.safe_load_all(kustomized) if d])
    ours = by_identity(rendered_by_us(target))
    assert sorted(ours) == sorted(theirs)
    for identity, obj in theirs.items():
        assert ours[identity] == obj, identity
