"""What every Vigil service can be told the same way: where it listens, how it logs, how long
it drains on SIGTERM and the token it wants; the gRPC services also whether they serve TLS.

Each service's settings class derives from :class:`ServiceSettings` (a gRPC service from
:class:`GrpcServiceSettings`), names its own environment prefix (``VIGIL_DETECTOR_``, ...) and
default port, and adds its own fields.
"""

from __future__ import annotations

import pathlib

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.core.ports import LOOPBACK
from vigil.core.tls import TlsServerFiles, check_server_files, server_files


class ServiceSettings(BaseSettings):
    """The fields every service has; every one has a working default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = LOOPBACK
    port: int
    log_level: str = "INFO"
    # Seconds that calls and requests in flight get to finish on SIGTERM.
    grace_s: float = 5.0
    # Optional bearer token: when set, every call except health (and the gRPC services'
    # reflection) needs it as ``authorization: Bearer <token>`` (else UNAUTHENTICATED, or 401 at
    # the bridge). Never logged.
    token: SecretStr | None = None


class GrpcServiceSettings(ServiceSettings):
    """A gRPC service's settings: TLS (``vigil.core.tls``) when ``tls_cert_file`` and
    ``tls_key_file`` name PEM files (the certificate may carry its chain after it), mutual TLS
    when ``tls_client_ca_file`` also names the CA that signs the callers' certificates.
    Plaintext when unset. The files are checked when the settings are made and reread while
    serving when they change."""

    tls_cert_file: pathlib.Path | None = None
    tls_key_file: pathlib.Path | None = None
    tls_client_ca_file: pathlib.Path | None = None
    # A port of ``host`` serving only the standard gRPC health service, in plaintext and without
    # the token, for probes that cannot speak TLS (Kubernetes' native gRPC probes); unset: none.
    health_port: int | None = None

    @model_validator(mode="after")
    def _tls_files_usable(self) -> GrpcServiceSettings:
        # Here, before anything starts: an incomplete set, a file that is missing or not PEM, a
        # key not of its certificate stops the start (TlsConfigError, naming the file).
        check_server_files(self.tls)
        return self

    @property
    def tls(self) -> TlsServerFiles | None:
        """The files to serve TLS from; None: plaintext."""
        return server_files(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)
