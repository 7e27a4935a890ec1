"""The Ed25519 key that signs evidence packages.

A deployment mounts its own key (``evidence_key_file``: PEM, PKCS#8, unencrypted, mode 0600)
and hands the public half to whoever must check its packages. Without one the service makes a
key once, into its data directory, and logs its public half: a default install signs from its
first incident, but that key lives and dies with the data directory.

Anyone who reads the private key can sign a forged package, so a key file that group or others
may read is refused, as the sources file is: a service that will not start gets fixed at once.
"""

from __future__ import annotations

import logging
import os
import pathlib
import stat
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from detector_service.settings import DetectorSettings
from vigil.core.errors import InvalidInput
from vigil.core.evidence import fingerprint

log = logging.getLogger(__name__)

# The key the service makes for itself when none is configured, in its data directory.
GENERATED_NAME = "evidence-key.pem"


@dataclass(frozen=True)
class EvidenceKey:
    private: Ed25519PrivateKey
    # Raw 32 bytes, as EvidenceInfo.public_key and `vigil verify --public-key` carry it.
    public: bytes
    path: pathlib.Path

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_key(path: pathlib.Path) -> EvidenceKey:
    """The key in ``path``; refuses a file others may read, or one that is not an Ed25519 key."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read evidence key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(
            f"evidence key {path} is readable by others (mode {stat.S_IMODE(mode):o}), who could "
            f"sign forged evidence with it: run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"evidence key {path} is not an unencrypted PEM private key: {exc}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"evidence key {path} is not an Ed25519 key")
    return EvidenceKey(key, _public_bytes(key), path)


def _generate(path: pathlib.Path) -> EvidenceKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written under a temporary name, 0600 from its creation, and renamed: a crash never leaves
    # a half key that the next start would refuse.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return EvidenceKey(key, _public_bytes(key), path)


def load_key(settings: DetectorSettings) -> EvidenceKey:
    """The configured key, or the service's own (made on first use). Blocking: call at start."""
    if settings.evidence_key_file is not None:
        key = read_key(settings.evidence_key_file)
        log.info(
            "evidence packages are signed with key %s from %s (public key %s)",
            key.fingerprint,
            key.path,
            key.public.hex(),
        )
        return key
    path = settings.data_dir / GENERATED_NAME
    if path.exists():
        key = read_key(path)
        made, level = "its own", logging.INFO
    else:
        key = _generate(path)
        made, level = "a new", logging.WARNING
    log.log(
        level,
        "evidence packages are signed with %s key %s in %s (public key %s); production "
        "deployments mount their own with VIGIL_DETECTOR_EVIDENCE_KEY_FILE",
        made,
        key.fingerprint,
        key.path,
        key.public.hex(),
    )
    return key
