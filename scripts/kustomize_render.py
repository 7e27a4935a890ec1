"""Render a kustomization offline: the part of kustomize that deploy/k8s uses, in Python.

PyPI has no well-kept package with a kustomize binary, and ``make lint`` must run without one, so
``scripts/check_deploy.py`` renders the overlays with this. It does what kustomize does for the
fields it knows, in kustomize's order (generators, patches, namespace, replicas, images), and
refuses every field and form it does not know instead of ignoring it, so that an overlay cannot
mean one thing here and another to kustomize. ``tests/deploy/test_manifests.py`` compares its
output with ``kubectl kustomize`` where kubectl is installed.

Known: resources (files and directories), namespace, secretGenerator and configMapGenerator
(``envs``, ``files`` and ``literals``, with ``generatorOptions.disableNameSuffixHash: true``:
hashed names are not reproduced), patches (strategic merge or JSON 6902, from ``path`` or
``patch``, with a ``target`` of kind/name/group/version, regular expressions as in kustomize),
replicas, images.

Usage: python scripts/kustomize_render.py [--examples] DIR   (the objects as JSON, one a line)
``--examples`` reads ``X.example`` for a generator's file ``X`` that does not exist (``make lint``
renders the committed templates; a real deployment has its own secrets files).
"""

from __future__ import annotations

import base64
import copy
import json
import pathlib
import re
import sys
from typing import Any

import yaml

Obj = dict[str, Any]

KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "secretGenerator",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "replicas",
    "images",
}
GENERATOR_FIELDS = {"name", "envs", "files", "literals", "type"}
TARGET_FIELDS = {"group", "version", "kind", "name"}
# Kubernetes' own cluster-scoped kinds: kustomize knows no other kind's scope, so it gives a
# custom resource (cert-manager's ClusterIssuer too) the namespace, and so do we.
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
# Strategic merge: lists merged element by element on these keys (as Kubernetes' patchMergeKey);
# every other list is replaced whole.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    """The kustomization uses something this renderer does not reproduce, or is broken."""


def load_documents(path: pathlib.Path) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise RenderError(f"{path}: {error}") from error


def render(directory: pathlib.Path, *, examples: bool = False) -> list[Obj]:
    """The objects the kustomization in ``directory`` makes, transformed."""
    path = directory / "kustomization.yaml"
    documents = load_documents(path)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise RenderError(f"{path}: expected one mapping")
    kustomization: Obj = documents[0]
    unknown = sorted(set(kustomization) - KNOWN_FIELDS)
    if unknown:
        raise RenderError(f"{path}: fields this renderer does not reproduce: {unknown}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        resource = directory / entry
        if resource.is_dir():
            objects += render(resource, examples=examples)
        else:
            objects += [_object(d, resource) for d in load_documents(resource)]
    objects += generate(directory, kustomization, examples=examples)
    for patch in kustomization.get("patches", []):
        apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for entry in kustomization.get("replicas", []):
        for obj in objects:
            if obj["kind"] in SCALABLE and obj["metadata"]["name"] == entry["name"]:
                obj["spec"]["replicas"] = entry["count"]
    for entry in kustomization.get("images", []):
        for obj in objects:
            set_images(obj, entry)
    return objects


def _object(document: Any, path: pathlib.Path) -> Obj:
    if not (isinstance(document, dict) and {"apiVersion", "kind", "metadata"} <= set(document)):
        raise RenderError(f"{path}: not a Kubernetes object: {str(document)[:80]}")
    return document


def generate(directory: pathlib.Path, kustomization: Obj, *, examples: bool) -> list[Obj]:
    generators = kustomization.get("secretGenerator", []) + kustomization.get(
        "configMapGenerator", []
    )
    if not generators:
        return []
    options = kustomization.get("generatorOptions", {})
    if options != {"disableNameSuffixHash": True}:
        raise RenderError(
            f"{directory}: generatorOptions must be exactly disableNameSuffixHash: true "
            "(hashed names are not reproduced)"
        )
    made = []
    for kind, key in (("Secret", "secretGenerator"), ("ConfigMap", "configMapGenerator")):
        for generator in kustomization.get(key, []):
            unknown = sorted(set(generator) - GENERATOR_FIELDS)
            if unknown:
                raise RenderError(f"{directory}: {key} fields not reproduced: {unknown}")
            pairs: dict[str, str] = {}
            for name in generator.get("envs", []):
                pairs |= env_file(directory / name, examples=examples)
            for entry in generator.get("files", []):
                key, _, name = entry.rpartition("=")
                source = _existing(directory / name, examples=examples)
                pairs[key or source.name.removesuffix(".example")] = _read(source)
            for literal in generator.get("literals", []):
                key, value = _pair(literal, f"{directory}: literal")
                pairs[key] = value
            obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
            if kind == "Secret":
                obj["type"] = generator.get("type", "Opaque")
                obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in pairs.items()}
            else:
                obj["data"] = pairs
            made.append(obj)
    return made


def _existing(path: pathlib.Path, *, examples: bool) -> pathlib.Path:
    if examples and not path.exists():
        return path.with_name(path.name + ".example")
    return path


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise RenderError(f"{path}: {error}") from error


def env_file(path: pathlib.Path, *, examples: bool) -> dict[str, str]:
    path = _existing(path, examples=examples)
    pairs = {}
    for number, line in enumerate(_read(path).splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = _pair(line, f"{path}:{number}")
            pairs[key] = value
    return pairs


def _pair(text: str, where: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    # kustomize's handling of quotes and of a bare KEY (read from its own environment) is not
    # reproduced: refused.
    if not sep or not key or value[:1] in ("'", '"'):
        raise RenderError(f"{where}: expected KEY=VALUE without quotes")
    return key, value


def apply_patch(directory: pathlib.Path, entry: Obj, objects: list[Obj]) -> None:
    unknown = sorted(set(entry) - {"path", "patch", "target"})
    if unknown or ("path" in entry) == ("patch" in entry):
        raise RenderError(f"{directory}: a patch needs one of path or patch, and maybe target")
    if "path" in entry:
        documents = load_documents(directory / entry["path"])
    else:
        documents = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
    target = entry.get("target")
    for document in documents:
        if isinstance(document, list):
            if target is None:
                raise RenderError(f"{directory}: a JSON 6902 patch needs a target")
            for obj in matching(objects, target, directory):
                for operation in document:
                    json6902(obj, operation)
            continue
        selector = target or {
            "kind": document.get("kind"),
            "name": document.get("metadata", {}).get("name"),
        }
        for obj in matching(objects, selector, directory):
            strategic_merge(obj, {k: v for k, v in document.items() if k != "metadata"})
            strategic_merge(obj["metadata"], _patch_metadata(document))


def _patch_metadata(document: Obj) -> Obj:
    metadata = dict(document.get("metadata", {}))
    metadata.pop("name", None)
    metadata.pop("namespace", None)
    return metadata


def matching(objects: list[Obj], target: Obj, directory: pathlib.Path) -> list[Obj]:
    unknown = sorted(set(target) - TARGET_FIELDS)
    if unknown:
        raise RenderError(f"{directory}: patch target fields not reproduced: {unknown}")
    found = []
    for obj in objects:
        group, _, version = obj["apiVersion"].rpartition("/")
        fields = {
            "group": group,
            "version": version,
            "kind": obj["kind"],
            "name": obj["metadata"]["name"],
        }
        if all(re.fullmatch(str(v), fields[k]) for k, v in target.items()):
            found.append(obj)
    if not found:
        raise RenderError(f"{directory}: no object matches the patch target {target}")
    return found


def strategic_merge(base: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            if "$patch" in value:
                raise RenderError(f"$patch directives are not reproduced ({key})")
            strategic_merge(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list) and key in MERGE_KEYS:
            merge_list(base[key], value, MERGE_KEYS[key])
        else:
            base[key] = copy.deepcopy(value)


def merge_list(base: list[Obj], patch: list[Obj], merge_key: str) -> None:
    # kustomize's order: the patch's elements first (merged into the base's of the same key, in
    # the patch's order), then the base's others in theirs.
    merged = []
    for item in patch:
        same = [b for b in base if b.get(merge_key) == item.get(merge_key)]
        if same:
            strategic_merge(same[0], item)
            merged.append(same[0])
        else:
            merged.append(copy.deepcopy(item))
    base[:] = merged + [b for b in base if not any(b is m for m in merged)]


def json6902(obj: Obj, operation: Obj) -> None:
    op = operation.get("op")
    if op not in ("add", "replace", "remove"):
        raise RenderError(f"JSON patch operation not reproduced: {op}")
    path = operation["path"]
    keys = [k.replace("~1", "/").replace("~0", "~") for k in path.split("/")[1:]]
    parent: Any = obj
    last = keys[-1]
    try:
        for key in keys[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                parent[index] = copy.deepcopy(operation["value"])
            else:
                del parent[index]
        elif op == "add" or (op == "replace" and last in parent):
            parent[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[last]
        else:
            raise KeyError(last)
    except (KeyError, IndexError, ValueError) as error:
        raise RenderError(f"JSON patch {op} {path}: no such place ({error})") from error


def set_images(obj: Obj, entry: Obj) -> None:
    spec = obj.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec", {})
    for container in template.get("containers", []) + template.get("initContainers", []):
        image: str = container.get("image", "")
        name, tag = _split_image(image)
        if name == entry["name"]:
            new_tag = f":{entry['newTag']}" if "newTag" in entry else tag
            if "digest" in entry:
                new_tag = f"@{entry['digest']}"
            container["image"] = entry.get("newName", name) + new_tag


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def main(argv: list[str]) -> int:
    examples = "--examples" in argv
    paths = [a for a in argv if a != "--examples"]
    if len(paths) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        objects = render(pathlib.Path(paths[0]), examples=examples)
    except RenderError as error:
        print(f"kustomize_render: {error}", file=sys.stderr)
        return 1
    for obj in objects:
        print(json.dumps(obj, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
