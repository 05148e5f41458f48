"""Settings of the payments service, from ``PAYMENTS_*`` and the shared variables.

Shared (``services.common.config``): ``RECKON_SERVICE_TOKEN``, ``REDIS_URL``,
``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``.
Own: ``PAYMENTS_LISTEN`` (default ``127.0.0.1:50055``), ``PAYMENTS_DATABASE_URL``,
``PAYMENTS_DATABASE_SCHEMA``, ``PAYMENTS_MIGRATE_ON_START``, ``PAYMENTS_PROVIDER``
(``sandbox``, the embedded default, or ``stripe`` with ``PAYMENTS_STRIPE_API_KEY``
and optionally ``PAYMENTS_STRIPE_API_BASE``), ``PAYMENTS_RETRY_DAYS`` (default
``1,3,5,7``), ``PAYMENTS_WEBHOOK_SECRET`` (``whsec_...``: signs and verifies
provider callbacks; generated per process when unset) and the worker knobs below.
Peers: ``INVOICING_ADDR`` (allocation, credit, reopening invoices) and
``CHARGING_ADDR`` (prepaid top-ups); unset, what needs them waits and says so.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port


class PaymentsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_")
    service_name: ClassVar[str] = "payments"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['payments']}"
    provider: Literal["sandbox", "stripe"] = "sandbox"
    stripe_api_key: SecretStr = SecretStr("")
    stripe_api_base: str | None = None
    # Days after a first failure on which a failed collection is tried again.
    retry_days: str = "1,3,5,7"
    webhook_secret: SecretStr = SecretStr("")
    # Days a sandbox direct debit takes to settle (its signed callback follows).
    sandbox_settle_days: int = Field(default=2, ge=0, le=30)
    # How often the janitor, the retry runner and the effects runner look for work.
    worker_interval_seconds: float = Field(default=5.0, gt=0)
    worker_batch_size: int = Field(default=200, ge=1)
    invoice_events_claim_idle_ms: int = Field(default=30_000, ge=1000)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    peer_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    invoicing_addr: str | None = Field(default=None, validation_alias="INVOICING_ADDR")
    charging_addr: str | None = Field(default=None, validation_alias="CHARGING_ADDR")

    @field_validator("invoicing_addr", "charging_addr")
    @classmethod
    def _peer(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        parse_host_port(value)
        return value

    @field_validator("retry_days")
    @classmethod
    def _days(cls, value: str) -> str:
        days = [int(d) for d in value.split(",") if d.strip()]
        if not 1 <= len(days) <= 8 or days != sorted(set(days)) or days[0] < 1:
            raise ValueError("expected 1 to 8 increasing whole days, e.g. 1,3,5,7")
        return ",".join(str(d) for d in days)

    @property
    def retry_schedule(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.retry_days.split(","))
