"""The evidence package's format, shared by the detector that writes it and ``vigil verify``.

A package is a ZIP file: the incident's files (clip, snapshot, incident record, detections), a
manifest naming each with its size and SHA-256, and the manifest's Ed25519 signature. A hash
alone shows accidents; the signature shows that nobody without the service's key changed the
manifest, and through it every file.
"""

from __future__ import annotations

import hashlib

# The manifest's "format"; a verifier refuses a format it does not know.
FORMAT = "vigil-evidence/1"
MANIFEST = "manifest.json"
# The raw 64-byte Ed25519 signature of MANIFEST's bytes exactly as stored.
SIGNATURE = "manifest.sig"
CONTENT_TYPE = "application/zip"

# The files a package may hold besides the manifest and its signature.
CLIP = "clip.mp4"
# An unrecorded source's annotated clip (MJPEG AVI), when the service wrote one.
LEGACY_CLIP = "clip.avi"
SNAPSHOT = "snapshot.jpg"
INCIDENT = "incident.json"
DETECTIONS = "detections.json"
# What the language model and the operators made of the incident.
VERDICT = "verdict.json"

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def file_name(incident_id: str) -> str:
    return f"incident-{incident_id}.zip"


def fingerprint(public_key: bytes) -> str:
    """A short name of a public key for logs and messages (SHA-256, first 16 hex digits)."""
    return hashlib.sha256(public_key).hexdigest()[:16]
