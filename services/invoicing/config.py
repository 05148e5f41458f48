"""Settings of the invoicing service, from ``INVOICING_*`` and the shared variables.

Shared (see ``services.common.config``): ``RECKON_SERVICE_TOKEN`` and ``REDIS_URL``
(required), ``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``.
Own: ``INVOICING_LISTEN`` (default ``127.0.0.1:50054``), ``INVOICING_DATABASE_URL``,
``INVOICING_DATABASE_SCHEMA``, ``INVOICING_MIGRATE_ON_START`` and the knobs below.
Peer: ``RATING_ADDR`` (required to price plan fees; without it only usage and
pending items are invoiced and a warning says so).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port


class InvoicingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICING_")
    service_name: ClassVar[str] = "invoicing"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['invoicing']}"
    # Bill-run workers in this process (0: the process only serves the API).
    workers: int = Field(default=1, ge=0, le=16)
    # How often the scheduler looks at the clock (a moved test clock is seen this fast).
    scheduler_interval_seconds: float = Field(default=1.0, gt=0)
    # Start the daily bill run of accounts whose cycle ended.
    daily_bill_runs: bool = True
    # A run without progress for this long has its remaining work queued again.
    stalled_after_seconds: float = Field(default=60.0, gt=0)
    # A work message a killed worker left pending goes to another worker after this.
    work_claim_idle_ms: int = Field(default=30_000, ge=100)
    # An event a crashed consumer left pending is redelivered after this long.
    events_claim_idle_ms: int = Field(default=30_000, ge=100)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    rating_addr: str | None = Field(default=None, validation_alias="RATING_ADDR")
    pricing_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("rating_addr")
    @classmethod
    def _rating_addr(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_host_port(value)
        return value
