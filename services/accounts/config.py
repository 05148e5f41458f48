"""Settings of the accounts service, from ``ACCOUNTS_*`` and the shared variables.

Shared (see ``services.common.config``): ``RECKON_SERVICE_TOKEN`` and
``REDIS_URL`` (required), ``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``.
Own: ``ACCOUNTS_LISTEN`` (default ``127.0.0.1:50051``), ``ACCOUNTS_DATABASE_URL``,
``ACCOUNTS_DATABASE_SCHEMA``, ``ACCOUNTS_MIGRATE_ON_START`` and the scheduler
and consumer knobs below.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings


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
