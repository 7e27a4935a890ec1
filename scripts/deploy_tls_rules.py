"""The rules of ``scripts/check_deploy.py`` about calls between the services (TLS, reachability),
which no schema knows.

In a rendered overlay, from each Vigil container's environment (its ConfigMaps and literal
values):

- A service that serves TLS is called over TLS by each of its callers (the analyzer's calls to the
  detector, the detector's to the analyzer, the bridge's to both), which present a certificate
  when it wants mutual TLS; one that serves plaintext is called in plaintext. Either mismatch
  fails every call.
- The NetworkPolicies selecting a service's pods let each of its callers' pods (a caller that
  names it) reach its gRPC port.
- In an overlay whose services talk across machines (``ENCRYPTED_OVERLAYS``) every gRPC service
  serves mutual TLS and every caller names the CA it verifies against and its own certificate.
- A caller names each service by a host its cert-manager Certificate names (gRPC checks the
  certificate against the target's host).
- A replica's advertised address (where other replicas send its clients) is a host its
  Certificate names too.
- Every TLS file named is a key of a Secret mounted at its directory (a Secret of the overlay, or
  one a cert-manager Certificate of the overlay issues: tls.crt, tls.key, ca.crt).
- Kubelet's native gRPC probes cannot speak TLS: a service serving TLS is probed on its plaintext
  health-only port (``VIGIL_<SERVICE>_HEALTH_PORT``), a plaintext one on either port.
- No NetworkPolicy opens that health port (it answers without TLS or token): the kubelet probes
  from the pod's own node, whose traffic NetworkPolicies always allow.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

Obj = dict[str, Any]

# The gRPC services by the module their container runs: their settings' prefix and default port.
SERVERS = {
    "detector_service": ("VIGIL_DETECTOR_", 50051),
    "analyzer_service": ("VIGIL_ANALYZER_", 50052),
}
# Who calls which services: the prefix of the settings its TLS to them is configured by, and the
# setting naming each one's address.
CALLERS = {
    # Verified alerts and watch rules (an empty URL turns both off).
    "detector_service": (
        "VIGIL_DETECTOR_ANALYZER_TLS_",
        {"analyzer_service": "VIGIL_DETECTOR_ANALYZER_URL"},
    ),
    "analyzer_service": (
        "VIGIL_ANALYZER_DETECTOR_TLS_",
        {"detector_service": "VIGIL_ANALYZER_DETECTOR_ADDRESS"},
    ),
    "bridge": (
        "VIGIL_BRIDGE_BACKEND_TLS_",
        {
            "detector_service": "VIGIL_BRIDGE_DETECTOR_ADDRESS",
            "analyzer_service": "VIGIL_BRIDGE_ANALYZER_ADDRESS",
        },
    ),
}
# The setting naming where other replicas send a replica's clients (the detector's sources' owner).
ADVERTISED = {"detector_service": "VIGIL_DETECTOR_ADVERTISE_ADDRESS"}
# Overlays whose replicas run on several nodes: what passes between the services crosses machines.
ENCRYPTED_OVERLAYS = {"production"}
# The keys of the Secret cert-manager issues from a Certificate.
CERTIFICATE_KEYS = {"tls.crt", "tls.key", "ca.crt"}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def module(container: Obj) -> str:
    """What the container runs (its image's entry point takes the module as its argument)."""
    return " ".join(container.get("args", []))


def environment(container: Obj, objects: list[Obj]) -> dict[str, str | None]:
    """The container's variables: from its ConfigMaps and literal values; None for one whose
    value is not in the overlay's text (a Secret's, a field's)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        for obj in objects:
            if ref and obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == ref["name"]:
                env |= {k: str(v) for k, v in obj.get("data", {}).items()}
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value")
    return env


def secret_keys(name: str, objects: list[Obj]) -> set[str] | None:
    """The keys of the Secret ``name`` in the overlay, or of the one a cert-manager Certificate
    of the overlay issues under that name; None when neither is there."""
    for obj in objects:
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
            return set(obj.get("data", {}))
        if obj["kind"] == "Certificate" and obj.get("spec", {}).get("secretName") == name:
            return CERTIFICATE_KEYS
    return None


class _Container:
    def __init__(self, workload: Obj, container: Obj, objects: list[Obj], where: str) -> None:
        self.workload = workload
        self.container = container
        self.module = module(container)
        self.env = environment(container, objects)
        self.where = f"{where} {container['name']}"

    def files(self, prefix: str, *names: str) -> dict[str, str | None]:
        return {prefix + n: self.env.get(prefix + n) for n in names}


def check_tls(overlay: str, workloads: list[Obj], objects: list[Obj], where: str) -> list[str]:
    containers = [
        _Container(w, c, objects, f"{where}: {w['kind']}/{w['metadata']['name']} container")
        for w in workloads
        for c in w["spec"]["template"]["spec"]["containers"]
        if module(c) in SERVERS or module(c) in CALLERS
    ]
    encrypted = overlay in ENCRYPTED_OVERLAYS
    problems = []
    served: dict[str, tuple[bool, bool]] = {}  # module: (TLS, mutual TLS)
    names: dict[str, tuple[str, list[str]]] = {}  # module: its Certificate's name and DNS names
    servers: dict[str, _Container] = {}
    for c in containers:
        if c.module in SERVERS:
            servers[c.module] = c
            prefix, _ = SERVERS[c.module]
            files = c.files(prefix + "TLS_", "CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE")
            problems += _mounted(c, files, objects)
            cert, key, ca = files.values()
            served[c.module] = (bool(cert and key), bool(cert and key and ca))
            certificate = _certificate(c, cert, objects)
            if certificate is not None:
                names[c.module] = certificate
                if c.module in ADVERTISED:
                    problems += _advertised(c, ADVERTISED[c.module], certificate)
            if encrypted and not all(files.values()):
                unset = ", ".join(n for n, v in files.items() if not v)
                problems.append(f"{c.where}: {unset} unset: mutual TLS between machines wanted")
            problems += _probes(c, prefix, tls=served[c.module][0])
            problems += _health_port_closed(c, prefix, objects)
    for c in containers:
        if c.module not in CALLERS:
            continue
        prefix, called = CALLERS[c.module]
        files = c.files(prefix, "CA_FILE", "CERT_FILE", "KEY_FILE")
        problems += _mounted(c, files, objects)
        ca, cert, _ = files.values()
        uses_tls = any(files.values())
        if encrypted and not all(files.values()):
            unset = ", ".join(n for n, v in files.items() if not v)
            problems.append(f"{c.where}: {unset} unset: mutual TLS between machines wanted")
        for name, address in called.items():
            if c.env.get(address) and name in servers:
                problems += _reachable(c, servers[name], objects)
            host = _host(c.env.get(address) or "")
            if uses_tls and name in names and host and not _named(host, names[name][1]):
                problems.append(
                    f"{c.where}: {address} names {host}, which {names[name][0]} does not "
                    "(its dnsNames): the hostname check fails"
                )
            tls, mutual = served.get(name, (uses_tls, False))
            if tls and not uses_tls:
                problems.append(f"{c.where}: calls {name} in plaintext, but it serves TLS")
            elif uses_tls and not tls:
                problems.append(f"{c.where}: calls {name} over TLS, but it serves plaintext")
            elif mutual and not cert:
                problems.append(
                    f"{c.where}: presents no certificate to {name}, which wants mutual TLS"
                )
    return problems


def _mounted(c: _Container, files: dict[str, str | None], objects: list[Obj]) -> list[str]:
    """Each file named is a key of a Secret mounted at its directory."""
    volumes = {v["name"]: v for v in c.workload["spec"]["template"]["spec"].get("volumes", [])}
    problems = []
    for name, value in files.items():
        if not value:
            continue
        path = pathlib.PurePosixPath(value)
        mounts = [m for m in c.container.get("volumeMounts", [])
                  if path.parent == pathlib.PurePosixPath(m["mountPath"])]  # fmt: skip
        secret = volumes.get(mounts[0]["name"], {}).get("secret") if mounts else None
        keys = secret_keys(secret["secretName"], objects) if secret else None
        if keys is None or path.name not in keys:
            problems.append(f"{c.where}: {name}={value} is no key of a Secret mounted there")
    return problems


def _certificate(
    c: _Container, cert: str | None, objects: list[Obj]
) -> tuple[str, list[str]] | None:
    """The cert-manager Certificate whose Secret is mounted where ``cert`` lies, if any."""
    if not cert:
        return None
    directory = pathlib.PurePosixPath(cert).parent
    volumes = {v["name"]: v for v in c.workload["spec"]["template"]["spec"].get("volumes", [])}
    for mount in c.container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret and pathlib.PurePosixPath(mount["mountPath"]) == directory:
            for obj in objects:
                spec = obj.get("spec", {})
                if obj["kind"] == "Certificate" and spec.get("secretName") == secret["secretName"]:
                    return f"Certificate/{obj['metadata']['name']}", spec.get("dnsNames", [])
    return None


def _advertised(c: _Container, setting: str, certificate: tuple[str, list[str]]) -> list[str]:
    """The host ``setting`` names, its $(VAR) references expanded as kubelet does (the pod's name
    and namespace those of the first replica), is one ``certificate`` names."""
    value = c.env.get(setting)
    if not value:
        return []
    fields = {
        "metadata.name": f"{c.workload['metadata']['name']}-0",
        "metadata.namespace": c.workload["metadata"].get("namespace", "default"),
    }
    known = {
        v["name"]: fields.get(v.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", ""))
        or v.get("value")
        for v in c.container.get("env", [])
    }
    expanded = re.sub(r"\$\((\w+)\)", lambda m: known.get(m[1]) or m[0], value)
    host = _host(expanded)
    if "$(" in expanded or not host or _named(host, certificate[1]):
        return []
    return [
        f"{c.where}: {setting} names {host}, which {certificate[0]} does not (its dnsNames): "
        "clients sent there fail the hostname check"
    ]


def _host(target: str) -> str:
    """The host a gRPC target names, which TLS checks the certificate against (dns:///h:p, h:p);
    "" for a list of addresses (the SDK's authority is then not a host of the overlay's)."""
    if "," in target or target.startswith(("ipv4:", "ipv6:", "unix:")):
        return ""
    if target.startswith("dns:"):
        target = target.removeprefix("dns:")
        if target.startswith("//"):  # dns://resolver/host:port
            target = target[2:].partition("/")[2]
    return target.rpartition(":")[0]


def _named(host: str, names: list[str]) -> bool:
    return any(n == host or (n.startswith("*.") and host.partition(".")[2] == n[2:]) for n in names)


def _probes(c: _Container, prefix: str, *, tls: bool) -> list[str]:
    port = int(c.env.get(prefix + "PORT") or SERVERS[c.module][1])
    health = c.env.get(prefix + "HEALTH_PORT")
    if tls and not health:
        return [f"{c.where}: serves TLS without {prefix}HEALTH_PORT, which kubelet's probes need"]
    wanted = {int(health)} if tls and health else {port} | ({int(health)} if health else set())
    of = f"the plaintext health port :{health}" if tls else f":{port}"
    return [
        f"{c.where}: {probe} is not a gRPC health probe of {of}"
        for probe in PROBES
        if (probe in c.container or probe != "startupProbe")
        and c.container.get(probe, {}).get("grpc", {}).get("port") not in wanted
    ]


def _health_port_closed(c: _Container, prefix: str, objects: list[Obj]) -> list[str]:
    health = c.env.get(prefix + "HEALTH_PORT")
    if not health:
        return []
    port = int(health)
    labels = c.workload["spec"]["template"]["metadata"].get("labels", {})
    problems = []
    for policy in objects:
        if policy["kind"] != "NetworkPolicy":
            continue
        selector = policy["spec"].get("podSelector", {}).get("matchLabels", {})
        if not all(labels.get(k) == v for k, v in selector.items()):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if not ports or any(_opens(p, port) for p in ports):
                problems.append(
                    f"{c.where}: NetworkPolicy/{policy['metadata']['name']} opens the plaintext "
                    f"health port :{port}, which only the node's kubelet should reach"
                )
    return problems


def _reachable(caller: _Container, server: _Container, objects: list[Obj]) -> list[str]:
    """The NetworkPolicies selecting the server's pods (if any do) let the caller's pods, in the
    same namespace, reach its gRPC port: otherwise every call the caller makes times out."""
    prefix, default = SERVERS[server.module]
    port = int(server.env.get(prefix + "PORT") or default)
    labels = server.workload["spec"]["template"]["metadata"].get("labels", {})
    theirs = caller.workload["spec"]["template"]["metadata"].get("labels", {})
    policies = [
        p for p in objects
        if p["kind"] == "NetworkPolicy"
        and _matches(p["spec"].get("podSelector", {}), labels)
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]  # fmt: skip
    for rule in (r for p in policies for r in p["spec"].get("ingress", [])):
        peers, ports = rule.get("from"), rule.get("ports")
        # A peer without namespaceSelector is a pod of the policy's own namespace.
        admitted = not peers or any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and _matches(peer["podSelector"], theirs)
            for peer in peers
        )
        if admitted and (not ports or any(_opens(p, port) for p in ports)):
            return []
    if not policies:
        return []
    named = ", ".join(p["metadata"]["name"] for p in policies)
    return [
        f"{server.where}: no NetworkPolicy selecting its pods ({named}) lets a "
        f"{caller.module} pod reach :{port}, which {caller.where} calls"
    ]


def _matches(selector: Obj, labels: Obj) -> bool:
    """A label selector's matchLabels against a pod's labels (empty: every pod)."""
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _opens(rule_port: Obj, port: int) -> bool:
    first = rule_port.get("port")
    if first is None:
        return True  # every port
    if not isinstance(first, int):
        return False  # a named port; the health port has no name
    return first <= port <= rule_port.get("endPort", first)
