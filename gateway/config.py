"""Settings of the gateway, from ``GATEWAY_*`` and the shared variables.

Shared (see ``services.common.config``): ``RECKON_SERVICE_TOKEN`` and ``REDIS_URL``
(required), ``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``. Own:
``GATEWAY_LISTEN`` (default ``127.0.0.1:8080``), ``GATEWAY_DATABASE_URL`` /
``GATEWAY_DATABASE_SCHEMA`` (its credentials, sessions and audit log),
``GATEWAY_JWT_SECRET`` (signs OAuth2 access tokens; default derived from the service
token), ``GATEWAY_RATE_LIMIT_PER_MINUTE``, ``GATEWAY_LOGIN_ATTEMPTS_PER_MINUTE``,
``GATEWAY_RATE_LIMIT_STORE`` (``redis`` or ``memory``),
``GATEWAY_SESSION_HOURS``, ``GATEWAY_SECURE_COOKIES``. Peers: ``ACCOUNTS_ADDR``,
``RATING_ADDR``, ``CHARGING_ADDR``, ``INVOICING_ADDR``,
``PAYMENTS_ADDR``, ``NOTIFICATIONS_ADDR``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings

DEFAULT_GATEWAY_PORT = 8080


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_")
    service_name: ClassVar[str] = "gateway"

    listen: str = f"127.0.0.1:{DEFAULT_GATEWAY_PORT}"
    accounts_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['accounts']}", validation_alias="ACCOUNTS_ADDR"
    )
    rating_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['rating']}", validation_alias="RATING_ADDR"
    )
    charging_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['charging']}", validation_alias="CHARGING_ADDR"
    )
    invoicing_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['invoicing']}", validation_alias="INVOICING_ADDR"
    )
    payments_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['payments']}", validation_alias="PAYMENTS_ADDR"
    )
    notifications_addr: str = Field(
        default=f"127.0.0.1:{DEFAULT_PORTS['notifications']}",
        validation_alias="NOTIFICATIONS_ADDR",
    )
    jwt_secret: SecretStr | None = None
    # Access tokens of the OAuth2 client-credentials grant live this long.
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Requests per minute per API client or customer login (a token bucket of that size).
    rate_limit_per_minute: int = Field(default=1200, ge=1)
    # Where the rate-limit buckets live: "redis" (REDIS_URL, shared by every gateway
    # process) or "memory" (this process only: one gateway, or tests). ADR 0072.
    rate_limit_store: Literal["redis", "memory"] = "redis"
    # Failed and successful login attempts per minute per login name and per address.
    login_attempts_per_minute: int = Field(default=10, ge=1)
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    # Off by default: `reckon up` serves plain http on loopback; on when behind TLS.
    secure_cookies: bool = False
    # Seconds a service call may take before the gateway answers 504.
    call_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @property
    def effective_jwt_secret(self) -> bytes:
        """The signing key: its own when set, else one derived from the service token
        (so every gateway replica of a suite agrees without another secret to share)."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value().encode()
        token = self.service_token.get_secret_value().encode()
        return hmac.new(token, b"reckon.gateway.jwt", hashlib.sha256).digest()
