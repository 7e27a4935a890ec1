"""TLS for the gRPC services and their callers, from PEM files mounted beside the process (a
Kubernetes Secret, what cert-manager writes). Plaintext unless files are named.

A server (:class:`TlsServerFiles`) serves its certificate and key; with a client CA it wants
mutual TLS: a caller must present a certificate that CA signed, or its connection is closed
during the handshake, before any call (health checks included) reaches the service. The files
are read and checked at start: one that is missing, unreadable, not PEM, or a key that does not
belong to its certificate stops the start with :class:`TlsConfigError` naming the file. While
serving, every new connection first looks at the files' identity (inode, size, mtime; a Secret
volume swaps a symlink, other tools rewrite in place) and, when it changed, rereads them: new
connections get the new certificate, open ones keep the one they shook hands with. A set caught
half-written (a new certificate beside the old key) is not taken: the previous one keeps serving,
with one warning, until the set is whole again.

A caller (:class:`TlsClientFiles`) verifies the server against a CA file (the system's roots
without one) and presents its own certificate when one is named. Its files are read when it
opens its channel; a renewed client certificate is presented from the next start.

File contents (keys above all) are never logged or put in messages; paths are.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import ssl
import threading

import grpc

from vigil.core.errors import InvalidInput

log = logging.getLogger(__name__)

Pem = bytes | str | os.PathLike[str]

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"


class TlsConfigError(InvalidInput):
    """TLS files that are incomplete, missing, unreadable or not what they should be. The
    message names the file and what is wrong with it, never its contents. Not a ValueError:
    raised in a settings validator it passes through as itself, where pydantic's error would
    print the settings' raw input (a token among them)."""


@dataclasses.dataclass(frozen=True)
class TlsServerFiles:
    """A server's certificate (PEM, its chain after it), its key, and the CA that signs the
    certificates callers must present (mutual TLS); no ``client_ca``: any caller may connect."""

    cert: pathlib.Path
    key: pathlib.Path
    client_ca: pathlib.Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


@dataclasses.dataclass(frozen=True)
class TlsClientFiles:
    """The CA a caller verifies servers against (None: the system's roots), and the certificate
    and key it presents to servers wanting mutual TLS (both or neither)."""

    ca: pathlib.Path | None = None
    cert: pathlib.Path | None = None
    key: pathlib.Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError("a client certificate and its key go together: set both or none")


def server_files(
    cert: pathlib.Path | None, key: pathlib.Path | None, client_ca: pathlib.Path | None
) -> TlsServerFiles | None:
    """The server TLS settings say (None: plaintext); TlsConfigError for an incomplete set."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsConfigError("a client CA (mutual TLS) needs the server's certificate and key")
        return None
    if cert is None or key is None:
        raise TlsConfigError("a server certificate and its key go together: set both or none")
    return TlsServerFiles(cert, key, client_ca)


def client_files(
    ca: pathlib.Path | None, cert: pathlib.Path | None, key: pathlib.Path | None
) -> TlsClientFiles | None:
    """The client TLS settings say (None: plaintext); TlsConfigError for an incomplete set."""
    if ca is None and cert is None and key is None:
        return None
    return TlsClientFiles(ca, cert, key)


def check_server_files(files: TlsServerFiles | None) -> None:
    """TlsConfigError unless ``files`` can be served now (settings check it at start)."""
    if files is not None:
        CertificateReloader(files).load()


def check_client_files(files: TlsClientFiles | None) -> None:
    """TlsConfigError unless ``files`` can be used now (settings check it at start)."""
    if files is not None:
        channel_credentials(files.ca, files.cert, files.key)


def read_certificates(source: Pem, what: str) -> bytes:
    """PEM certificates, as bytes or from the file ``source`` names; ``what`` says what they
    are, in messages. TlsConfigError when the file cannot be read or holds none."""
    return _read_pem(source, what, _CERTIFICATE)


def read_key(source: Pem, what: str) -> bytes:
    """A PEM private key, as ``read_certificates``."""
    return _read_pem(source, what, _PRIVATE_KEY)


def _read_pem(source: Pem, what: str, marker: bytes) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = pathlib.Path(source).read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"cannot read the {what} file {source}: {exc.strerror}") from None
    if marker not in data:
        where = "the bytes given" if isinstance(source, bytes) else f"the file {source}"
        raise TlsConfigError(f"{where} holds no PEM {what}")
    return data


def check_pair(cert: pathlib.Path, key: pathlib.Path) -> None:
    """TlsConfigError unless ``key`` is the private key of ``cert``'s certificate (and neither
    is damaged or the key encrypted)."""

    def no_password() -> bytes:
        raise TlsConfigError(f"the private key file {key} is encrypted; mount it unencrypted")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"the certificate file {cert} and the key file {key} are not a usable pair "
            f"({exc.reason or exc.strerror})"
        ) from None


Stamp = tuple[tuple[int, int, int, int], ...]


def _stamp(paths: list[pathlib.Path]) -> Stamp | None:
    """What identifies the files' current contents without reading them; None when one is gone
    (mid-swap)."""
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class CertificateReloader:
    """Reads a server's files into gRPC's certificate configuration, and again whenever they
    change (``fetch``, which gRPC calls before every handshake)."""

    def __init__(self, files: TlsServerFiles) -> None:
        self.files = files
        self._paths = [p for p in (files.cert, files.key, files.client_ca) if p is not None]
        self._lock = threading.Lock()
        self._stamp: Stamp | None = None
        # The stamp of a set that failed to load, so that it is warned about once.
        self._refused: Stamp | None = None

    def load(self) -> grpc.ServerCertificateConfiguration:
        """The configuration from the files as they are now; TlsConfigError when they are not
        usable."""
        stamp = _stamp(self._paths)
        cert = read_certificates(self.files.cert, "certificate")
        key = read_key(self.files.key, "private key")
        check_pair(self.files.cert, self.files.key)
        client_ca = (
            read_certificates(self.files.client_ca, "client CA certificate")
            if self.files.client_ca is not None
            else None
        )
        if stamp is None or _stamp(self._paths) != stamp:
            raise TlsConfigError(f"the TLS files beside {self.files.cert} changed while read")
        self._stamp = stamp
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since the last load, else None (gRPC
        keeps the current one). Never raises: a broken set is refused with a warning."""
        with self._lock:
            stamp = _stamp(self._paths)
            if stamp is None or stamp == self._stamp or stamp == self._refused:
                return None
            try:
                configuration = self.load()
            except TlsConfigError as exc:
                self._refused = stamp
                log.warning("keeping the current TLS certificate: %s", exc.message)
                return None
            log.info("TLS certificate reloaded from %s", self.files.cert)
            return configuration


def server_credentials(files: TlsServerFiles) -> grpc.ServerCredentials:
    """Credentials serving ``files``, reloaded when they change; TlsConfigError when they are
    not usable now."""
    reloader = CertificateReloader(files)
    return grpc.dynamic_ssl_server_credentials(
        reloader.load(),
        # The stubs leave out the None that gRPC documents as "keep the current one".
        reloader.fetch,  # type: ignore[arg-type]
        require_client_authentication=files.mutual,
    )


def channel_credentials(
    root_certificates: Pem | None, certificate_chain: Pem | None, private_key: Pem | None
) -> grpc.ChannelCredentials:
    """Credentials verifying the server against ``root_certificates`` (None: the system's
    roots) and presenting ``certificate_chain`` with ``private_key`` when given (PEM bytes or
    files); TlsConfigError when they are not usable."""
    if (certificate_chain is None) != (private_key is None):
        raise TlsConfigError("a client certificate and its key go together: set both or none")
    root = chain = key = None
    if root_certificates is not None:
        root = read_certificates(root_certificates, "CA certificate")
    if certificate_chain is not None and private_key is not None:
        chain = read_certificates(certificate_chain, "client certificate")
        key = read_key(private_key, "client private key")
        if not isinstance(certificate_chain, bytes) and not isinstance(private_key, bytes):
            check_pair(pathlib.Path(certificate_chain), pathlib.Path(private_key))
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
