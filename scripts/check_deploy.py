"""Offline check of the deployment files in deploy/ (``make lint``; no cluster, engine or network).

- The compose files against the compose specification: check-jsonschema with the schema it ships
  (``--builtin-schema vendor.compose-spec``); an override file (compose.tls.yaml) names only
  services of compose.yaml, and all the replicas of those it changes.
- Every Kubernetes overlay rendered (scripts/kustomize_render.py, with the committed secret
  templates) and each object validated against Kubernetes' OpenAPI schemas of the oldest and the
  newest version we support, strictly (an unknown field is an error): kubernetes-validate, whose
  schemas ship inside its package. Only cert-manager's kinds may lack a schema.
- Our own rules, which no schema knows: every VIGIL_ variable set anywhere is a field of that
  service's settings class; every workload's containers have readiness and liveness probes,
  native gRPC ones for the gRPC services; each workload of Vigil's images has a
  PodDisruptionBudget; every
  ConfigMap and Secret a pod reads (variables, volumes not marked optional) exists in the overlay
  (a Secret: or a cert-manager Certificate of the overlay issues it), with the key it names; a
  StatefulSet's Service is headless; every host of an Ingress is served over TLS; and TLS between
  the services is consistent (scripts/deploy_tls_rules.py: callers and services agree, mutual
  TLS in the production overlay, probes on the plaintext health port, which no NetworkPolicy
  opens, and NetworkPolicies that let each caller reach the services it names).

Usage: python scripts/check_deploy.py [DEPLOY_DIR]   (exit status 1 and one line per problem)
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "clients"), str(REPO / "scripts")]

from deploy_tls_rules import check_tls, secret_keys  # noqa: E402
from kustomize_render import RenderError, render  # noqa: E402

# Oldest (native gRPC probes are GA from 1.27; matchLabelKeys on by default from 1.27) and newest
# Kubernetes release whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
WITHOUT_SCHEMA = {("cert-manager.io", "Certificate"), ("cert-manager.io", "ClusterIssuer")}
WORKLOADS = {"Deployment", "StatefulSet"}
SETTINGS = {
    "VIGIL_DETECTOR_": ("detector_service.settings", "DetectorSettings"),
    "VIGIL_ANALYZER_": ("analyzer_service.settings", "AnalyzerSettings"),
    "VIGIL_BRIDGE_": ("bridge.settings", "BridgeSettings"),
}

Obj = dict[str, Any]

# kubernetes-validate parses a schema file (Kubernetes' definitions: megabytes of JSON) at every
# call; the files do not change while we run, so each is parsed once (5 s of 9 saved).
kubernetes_validate.utils.schema_contents = functools.cache(
    kubernetes_validate.utils.schema_contents
)


def settings_fields() -> dict[str, set[str]]:
    import importlib

    fields = {}
    for prefix, (module, name) in SETTINGS.items():
        cls = getattr(importlib.import_module(module), name)
        fields[prefix] = {f.upper() for f in cls.model_fields}
    return fields


def check_env_name(name: str, where: str, fields: dict[str, set[str]]) -> list[str]:
    if not name.startswith("VIGIL_"):
        return []
    for prefix, known in fields.items():
        if name.startswith(prefix):
            if name.removeprefix(prefix) in known:
                return []
            return [f"{where}: {name} is no setting of {SETTINGS[prefix][1]}"]
    return [f"{where}: {name} is read by no service (started directly, not by `vigil run`)"]


def check_compose(path: pathlib.Path, fields: dict[str, set[str]]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         "--output-format", "text", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    problems = []
    if result.returncode != 0:
        problems.append(f"{path}: not valid compose: {(result.stdout + result.stderr).strip()}")
    document = yaml.safe_load(path.read_text())
    for name, service in (document.get("services") or {}).items():
        environment = service.get("environment") or {}
        names = (
            environment if isinstance(environment, dict) else [e.split("=")[0] for e in environment]
        )
        for variable in names:
            problems += check_env_name(variable, f"{path}: service {name}", fields)
    return problems


def check_compose_override(path: pathlib.Path, base: pathlib.Path) -> list[str]:
    """An override (compose.tls.yaml) names services of the base file, and every replica of a
    service it changes: a replica left out would serve or call differently from its peers."""
    services: dict[str, Obj] = yaml.safe_load(base.read_text()).get("services") or {}
    changed = yaml.safe_load(path.read_text()).get("services") or {}
    problems = [
        f"{path}: service {n} is not one of {base.name}" for n in changed if n not in services
    ]
    commands = {str(services[n].get("command")) for n in changed if n in services}
    for name, service in services.items():
        if name not in changed and str(service.get("command")) in commands:
            problems.append(f"{path}: leaves out {name}, a replica of the services it changes")
    return problems


def check_env_file(path: pathlib.Path, fields: dict[str, set[str]]) -> list[str]:
    problems = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            problems += check_env_name(line.split("=", 1)[0].strip(), str(path), fields)
    return problems


def describe(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def check_schema(obj: Obj, where: str) -> list[str]:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError:
            group = obj["apiVersion"].rpartition("/")[0]
            if (group, obj["kind"]) not in WITHOUT_SCHEMA:
                problems.append(f"{where}: {describe(obj)}: no schema in Kubernetes {version}")
        except ValidationError as error:
            at = "/".join(str(p) for p in error.path)
            problems.append(f"{where}: {describe(obj)}: {at}: {error.message} ({version})")
    return problems


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def check_workload(
    obj: Obj, objects: list[Obj], where: str, fields: dict[str, set[str]]
) -> list[str]:
    problems = []
    name = f"{where}: {describe(obj)}"
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    budgets = [
        o for o in objects
        if o["kind"] == "PodDisruptionBudget"
        and _selects(o["spec"].get("selector", {}).get("matchLabels", {}), labels)
    ]  # fmt: skip
    if not budgets and any(_is_vigil(c) for c in pod_spec(obj)["containers"]):
        problems.append(f"{name}: no PodDisruptionBudget selects its pods")
    if obj["kind"] == "StatefulSet":
        services = [o for o in objects if o["kind"] == "Service"
                    and o["metadata"]["name"] == obj["spec"].get("serviceName")]  # fmt: skip
        if not services or services[0]["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: its serviceName is no headless Service of the overlay")
    for volume in pod_spec(obj).get("volumes", []):
        secret, config = volume.get("secret"), volume.get("configMap")
        if (
            secret
            and not secret.get("optional")
            and secret_keys(secret["secretName"], objects) is None
        ):
            problems.append(f"{name}: volume {volume['name']} needs Secret {secret['secretName']}")
        if (
            config
            and not config.get("optional")
            and not any(o["kind"] == "ConfigMap" and o["metadata"]["name"] == config["name"]
                        for o in objects)
        ):  # fmt: skip
            problems.append(f"{name}: volume {volume['name']} needs ConfigMap {config['name']}")
    for container in pod_spec(obj)["containers"]:
        where_c = f"{name} container {container['name']}"
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                problems.append(f"{where_c}: no {probe}")
        for variable in container.get("env", []):
            problems += check_env_name(variable["name"], where_c, fields)
        problems += check_references(container, objects, where_c)
    return problems


def _is_vigil(container: Obj) -> bool:
    """A container of Vigil's own images (vigil:cpu, registry.example.org/vigil:cuda)."""
    name: str = container.get("image", "").rsplit("/", 1)[-1]
    return name.split(":")[0].split("@")[0] == "vigil"


def _selects(selector: Obj, labels: Obj) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_references(container: Obj, objects: list[Obj], where: str) -> list[str]:
    """Each ConfigMap and Secret the container reads exists, with the key it names."""
    refs = [(kind, source[field]) for source in container.get("envFrom", [])
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef"))
            if field in source]  # fmt: skip
    keyed = [("ConfigMap", v["valueFrom"]["configMapKeyRef"]) for v in container.get("env", [])
             if "configMapKeyRef" in v.get("valueFrom", {})]  # fmt: skip
    keyed += [("Secret", v["valueFrom"]["secretKeyRef"]) for v in container.get("env", [])
              if "secretKeyRef" in v.get("valueFrom", {})]  # fmt: skip
    problems = []
    for kind, ref in refs + keyed:
        found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == ref["name"]]
        if not found:
            if not ref.get("optional"):
                problems.append(f"{where}: reads {kind} {ref['name']}, which the overlay lacks")
        elif "key" in ref and ref["key"] not in found[0].get("data", {}):
            problems.append(f"{where}: reads key {ref['key']} that {kind} {ref['name']} lacks")
    return problems


def check_ingress_tls(obj: Obj, where: str) -> list[str]:
    """Browsers' TLS ends at the ingress: each host it routes has a certificate there."""
    covered = {h for entry in obj["spec"].get("tls", []) for h in entry.get("hosts", [])}
    return [
        f"{where}: {describe(obj)}: host {rule.get('host', '*')} is not served over TLS"
        for rule in obj["spec"].get("rules", [])
        if rule.get("host") not in covered
    ]


def check_overlay(directory: pathlib.Path, fields: dict[str, set[str]]) -> list[str]:
    where = str(directory)
    try:
        objects = render(directory, examples=True)
    except RenderError as error:
        return [f"{where}: {error}"]
    problems = []
    for obj in objects:
        problems += check_schema(obj, where)
        if obj["kind"] == "ConfigMap":
            for variable in obj.get("data", {}):
                problems += check_env_name(variable, f"{where}: {describe(obj)}", fields)
        if obj["kind"] in WORKLOADS:
            problems += check_workload(obj, objects, where, fields)
        if obj["kind"] == "Ingress":
            problems += check_ingress_tls(obj, where)
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    problems += check_tls(directory.name, workloads, objects, where)
    for example in directory.glob("secrets/*.env.example"):
        problems += check_env_file(example, fields)
    return problems


def main(argv: list[str]) -> int:
    deploy = pathlib.Path(argv[0]) if argv else REPO / "deploy"
    fields = settings_fields()
    problems = []
    composes = sorted(deploy.glob("compose/compose*.yaml"))
    overlays = sorted(p for p in deploy.glob("k8s/overlays/*") if p.is_dir())
    if not composes or not overlays:
        problems.append(f"{deploy}: expected compose/compose.yaml and k8s/overlays/*")
    for path in composes:
        problems += check_compose(path, fields)
        if path.name != "compose.yaml":
            problems += check_compose_override(path, path.with_name("compose.yaml"))
    for example in deploy.glob("compose/env/*.env.example"):
        problems += check_env_file(example, fields)
    for overlay in overlays:
        problems += check_overlay(overlay, fields)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(
        f"deploy: {len(composes)} compose file(s) and {len(overlays)} overlays "
        f"({', '.join(o.name for o in overlays)}) valid against compose-spec and Kubernetes "
        f"{' and '.join(KUBERNETES_VERSIONS)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
