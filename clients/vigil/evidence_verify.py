"""Checking an incident's evidence package (``vigil verify``): the manifest's signature against
a public key the checker trusts, and every file against the manifest's size and SHA-256.

A package is valid when the signature holds for the given key, the manifest's format is known,
and the package holds exactly the manifest's files, each unchanged. Everything else is named:
which file was changed, added or is missing, or that the manifest itself was changed (or signed
by another key). The key the manifest names is used for messages only, never trusted.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pathlib
import re
import zipfile
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from vigil.core import evidence as fmt

_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1024 * 1024


class BadKey(ValueError):
    """The public key given cannot be read (a usage error, not an invalid package)."""


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``valid``, or the ``problems``, each naming what it is about."""

    valid: bool
    problems: tuple[str, ...]
    # The manifest's files that are present and unchanged.
    verified: tuple[str, ...]
    incident_id: str | None
    key_fingerprint: str


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_of(data: bytes, where: str) -> bytes:
    """The raw Ed25519 public key in ``data``: a PEM public or private key, 32 raw bytes, or
    64 hex digits."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            if b"PRIVATE KEY" in data:
                private = serialization.load_pem_private_key(data, password=None)
                if isinstance(private, Ed25519PrivateKey):
                    return _raw_public(private.public_key())
            else:
                public = serialization.load_pem_public_key(data)
                if isinstance(public, Ed25519PublicKey):
                    return _raw_public(public)
        except (ValueError, TypeError) as exc:
            raise BadKey(f"{where}: not a readable PEM key ({exc})") from None
        raise BadKey(f"{where}: not an Ed25519 key")
    if len(data) == fmt.PUBLIC_KEY_BYTES:
        return data
    text = data.strip().decode(errors="replace")
    if _HEX_KEY.match(text):
        return bytes.fromhex(text)
    raise BadKey(f"{where}: not an Ed25519 key (PEM, 32 raw bytes or 64 hex digits)")


def parse_public_key(given: str) -> bytes:
    """``--public-key``: 64 hex digits, or a file holding the key in any form ``public_key_of``
    reads."""
    if _HEX_KEY.match(given.strip()):
        return bytes.fromhex(given.strip())
    path = pathlib.Path(given)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadKey(
            f"{given!r} is neither 64 hex digits nor a readable key file ({exc.strerror})"
        ) from None
    return public_key_of(data, str(path))


def _digest(package: zipfile.ZipFile, name: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with package.open(name) as member:
        while chunk := member.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _manifest(data: bytes) -> dict[str, Any] | None:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        return None
    for entry in manifest["files"]:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            return None
    return manifest


def _signature_problem(manifest: bytes, signature: bytes, public_key: bytes) -> str | None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, manifest)
    except (InvalidSignature, ValueError):
        pass
    else:
        return None
    named = _manifest(manifest)
    claimed = named.get("public_key") if named is not None else None
    other = ""
    if isinstance(claimed, str) and claimed.lower() != public_key.hex():
        try:
            other = f"; the manifest names key {fmt.fingerprint(bytes.fromhex(claimed))}"
        except ValueError:
            other = "; the manifest names a malformed key"
    return (
        f"{fmt.MANIFEST}: the signature does not match key {fmt.fingerprint(public_key)}: the "
        f"manifest was changed, or another key signed it{other}"
    )


def _files(package: zipfile.ZipFile, manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, verified names) of the package's files against the manifest's list."""
    problems: list[str] = []
    verified: list[str] = []
    names = collections.Counter(package.namelist())
    for name, count in sorted(names.items()):
        if count > 1:
            problems.append(f"{name}: appears {count} times in the package")
    listed = {entry["name"]: entry for entry in manifest["files"]}
    for name, entry in listed.items():
        if name not in names:
            problems.append(f"{name}: missing")
            continue
        try:
            size, sha256 = _digest(package, name)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            problems.append(f"{name}: changed (unreadable: {exc})")
            continue
        if sha256 != entry["sha256"].lower() or size != entry["bytes"]:
            problems.append(f"{name}: changed ({size} bytes, SHA-256 {sha256[:16]}…)")
        else:
            verified.append(name)
    for name in sorted(set(names) - set(listed) - {fmt.MANIFEST, fmt.SIGNATURE}):
        problems.append(f"{name}: added (not in the manifest)")
    return problems, verified


def verify(path: pathlib.Path, public_key: bytes) -> Verdict:
    """Check the package at ``path`` against ``public_key`` (raw 32 bytes). Raises ``OSError``
    when the file cannot be read at all; anything wrong inside it is a problem of the verdict."""
    key_name = fmt.fingerprint(public_key)
    if len(public_key) != fmt.PUBLIC_KEY_BYTES:
        raise BadKey(f"an Ed25519 public key has {fmt.PUBLIC_KEY_BYTES} bytes")
    try:
        package = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        return Verdict(False, (f"{path.name}: not a ZIP file ({exc})",), (), None, key_name)
    with package:
        names = set(package.namelist())
        missing = [n for n in (fmt.MANIFEST, fmt.SIGNATURE) if n not in names]
        if missing:
            absent = tuple(f"{n}: missing (nothing can be verified)" for n in missing)
            return Verdict(False, absent, (), None, key_name)
        signed = package.read(fmt.MANIFEST)
        signature = package.read(fmt.SIGNATURE)
        problems: list[str] = []
        if (problem := _signature_problem(signed, signature, public_key)) is not None:
            problems.append(problem)
        manifest = _manifest(signed)
        if manifest is None:
            problems.append(f"{fmt.MANIFEST}: not a manifest (malformed JSON or fields)")
            return Verdict(False, tuple(problems), (), None, key_name)
        if manifest.get("format") != fmt.FORMAT:
            problems.append(f"{fmt.MANIFEST}: unknown format {manifest.get('format')!r}")
        file_problems, verified = _files(package, manifest)
    problems += file_problems
    incident = manifest.get("incident_id")
    return Verdict(
        not problems,
        tuple(problems),
        tuple(verified),
        incident if isinstance(incident, str) else None,
        key_name,
    )
