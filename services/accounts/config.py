"""Settings of the accounts service, from ``ACCOUNTS_*`` and the shared variables.

Shared (see ``services.common.config``): ``RECKON_SERVICE_TOKEN`` and
``REDIS_URL`` (required), ``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``.
Own: ``ACCOUNTS_LISTEN`` (default ``127.0.0.1:50051``), ``ACCOUNTS_DATABASE_URL``,
``ACCOUNTS_DATABASE_SCHEMA``, ``ACCOUNTS_MIGRATE_ON_START`` and the scheduler
and consumer knobs below.
Peer: ``RATING_ADDR`` (host:port of the rating service). When set, plan codes
are checked against rating's catalog (``ACCOUNTS_PLAN_CATALOG_TIMEOUT_SECONDS``,
``ACCOUNTS_PLAN_CATALOG_CACHE_SECONDS``); unset, any well-formed code is accepted
and a warning says so at start.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port


class AccountsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_")
    service_name: ClassVar[str] = "accounts"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['accounts']}"
    # How often scheduled plan changes and cancellations that fell due are applied.
    # Reads apply a due change themselves, so this only bounds how late events are.
    due_changes_interval_seconds: float = Field(default=30.0, gt=0)
    # Subscriptions handled per scheduler run (the rest wait for the next run).
    due_changes_batch_size: int = Field(default=500, ge=1)
    # A referral event a crashed consumer left pending is re-delivered after this long.
    referrals_claim_idle_ms: int = Field(default=30_000, ge=1000)
    # Seconds in-flight calls get to finish on shutdown.
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # The rating service, whose catalog says which plan codes exist (unset: not checked).
    rating_addr: str | None = Field(default=None, validation_alias="RATING_ADDR")
    # How long a subscription call waits for rating's answer about a plan code.
    plan_catalog_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # How long a plan rating confirmed is believed without asking again.
    plan_catalog_cache_seconds: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("rating_addr")
    @classmethod
    def _rating_addr(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_host_port(value)
        return value
