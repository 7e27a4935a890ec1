"""``vigil incidents export``, ``vigil verify`` and ``vigil keys``: incident evidence packages.

``export`` fetches an incident's signed package from the detector; ``verify`` checks one
against the public key the checker trusts and names what was changed, added or is missing;
``keys`` prints the public half of a signing key, or makes a new key for a deployment.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

from vigil import cli_common as common
from vigil import cli_extras, cli_reviews
from vigil.core.evidence import fingerprint

VERIFY_EXIT_CODES = "exit codes: 0 valid, 1 invalid (what is wrong is named), 2 usage error"


def add_incident_actions(
    incidents: argparse.ArgumentParser, parent: argparse.ArgumentParser
) -> None:
    """``vigil incidents export``; ``vigil incidents`` alone still lists them."""
    actions = incidents.add_subparsers(dest="action", metavar="ACTION")
    export = actions.add_parser(
        "export",
        parents=[parent],
        help="an incident as one signed evidence package (ZIP)",
        description="Write an incident's evidence package: its clip from the recording (not "
        "re-encoded), snapshot, record, detections and a manifest of their SHA-256, signed "
        "with the detector's Ed25519 key. `vigil verify` checks it.",
        epilog=common.EXIT_CODES_HELP,
    )
    export.add_argument("id", help="id of the incident")
    export.add_argument("--out", "-o", required=True, metavar="FILE", help="write the ZIP here")
    common.handled_by(export, export_command, "detector")
    cli_reviews.add_actions(actions, parent)


def add_parsers(commands: Any) -> None:
    verify = commands.add_parser(
        "verify",
        help="check an incident's evidence package against the signer's public key",
        description="Check the manifest's Ed25519 signature with the public key you trust "
        "(not the one the package names) and every file against the manifest's size and "
        "SHA-256; name each file that was changed, added or is missing.",
        epilog=VERIFY_EXIT_CODES,
    )
    verify.add_argument("package", metavar="PACKAGE", help="the evidence package (ZIP)")
    verify.add_argument(
        "--public-key",
        required=True,
        metavar="KEYFILE|HEX",
        help="the signer's public key: 64 hex digits, or a file (PEM public or private key, "
        "raw 32 bytes or hex)",
    )
    common.handled_by(verify, verify_command, "detector")

    keys = commands.add_parser(
        "keys",
        help="evidence signing keys: print a key's public half, or make a new key",
        description="The detector signs evidence packages with an Ed25519 key "
        "(VIGIL_DETECTOR_EVIDENCE_KEY_FILE). `public` prints a key's public half for "
        "`vigil verify --public-key`; `generate` writes a new key (mode 0600).",
        epilog=VERIFY_EXIT_CODES.replace("1 invalid (what is wrong is named)", "1 failure"),
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    public = actions.add_parser("public", help="print the public half of a key file")
    public.add_argument("keyfile", metavar="KEYFILE", help="PEM private or public key")
    common.handled_by(public, public_command, "detector")
    generate = actions.add_parser("generate", help="write a new Ed25519 key (PEM, PKCS#8)")
    generate.add_argument("keyfile", metavar="KEYFILE", help="the new file (must not exist)")
    common.handled_by(generate, generate_command, "detector")


def export_command(args: argparse.Namespace) -> int:
    with common.detector_client(args) as client:
        # Building a package remuxes the clip: no unary deadline, the stream's own end.
        info = client.export_incident(args.id, pathlib.Path(args.out))
    summary = (
        f"wrote {info.size} bytes to {args.out}: incident {args.id}, signed by key "
        f"{info.key_fingerprint}\n  check it: vigil verify {args.out} --public-key "
        f"{info.public_key}\n  (compare that key with the one your deployment publishes)"
    )
    return common.output(args, info, summary)


def verify_command(args: argparse.Namespace) -> int:
    cli_extras.require("verify", "verify")
    from vigil import evidence_verify  # needs the 'verify' extra

    try:
        key = evidence_verify.parse_public_key(args.public_key)
    except evidence_verify.BadKey as exc:
        raise common.UsageError(str(exc)) from None
    path = pathlib.Path(args.package)
    if not path.is_file():
        raise common.UsageError(f"no package at {path}")
    verdict = evidence_verify.verify(path, key)
    if args.json:
        common.print_json(verdict)
    elif verdict.valid:
        print(
            f"VALID: incident {verdict.incident_id}, {len(verdict.verified)} files unchanged "
            f"({', '.join(verdict.verified)}), signed by key {verdict.key_fingerprint}"
        )
    else:
        print(f"INVALID: {path}")
        for problem in verdict.problems:
            print(f"  {problem}")
    return common.EXIT_OK if verdict.valid else common.EXIT_FAILURE


def public_command(args: argparse.Namespace) -> int:
    cli_extras.require("keys", "verify")
    from vigil import evidence_verify

    path = pathlib.Path(args.keyfile)
    try:
        key = evidence_verify.public_key_of(path.read_bytes(), str(path))
    except OSError as exc:
        raise common.UsageError(f"cannot read {path}: {exc.strerror}") from None
    except evidence_verify.BadKey as exc:
        raise common.UsageError(str(exc)) from None
    value = {"public_key": key.hex(), "fingerprint": fingerprint(key)}
    return common.output(args, value, f"{key.hex()}  (fingerprint {fingerprint(key)})")


def generate_command(args: argparse.Namespace) -> int:
    cli_extras.require("keys", "verify")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(args.keyfile, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise common.UsageError(f"cannot create {args.keyfile}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    value = {
        "keyfile": args.keyfile,
        "public_key": public.hex(),
        "fingerprint": fingerprint(public),
    }
    text = f"wrote {args.keyfile} (mode 600); public key {public.hex()} ({fingerprint(public)})"
    return common.output(args, value, text)
