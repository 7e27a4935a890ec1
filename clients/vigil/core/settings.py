"""What every Vigil service can be told the same way: where it listens, how it logs, how long
it drains on SIGTERM and the token it wants.

Each service's settings class derives from :class:`ServiceSettings`, names its own environment
prefix (``VIGIL_DETECTOR_``, ...) and default port, and adds its own fields.
"""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.core.ports import LOOPBACK


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
