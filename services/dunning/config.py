"""Settings of the dunning service, from ``DUNNING_*`` and the shared variables.

Shared (see ``services.common.config``): ``RECKON_SERVICE_TOKEN`` and ``REDIS_URL``
(required), ``DATABASE_URL``, ``RECKON_DATA_DIR``, ``RECKON_LOG_LEVEL``,
``RECKON_TEST_CLOCK``.
Own: ``DUNNING_LISTEN`` (default ``127.0.0.1:50056``), ``DUNNING_DATABASE_URL``,
``DUNNING_DATABASE_SCHEMA``, ``DUNNING_MIGRATE_ON_START``, ``DUNNING_RUN_HOUR`` (UTC
hour after which the day's run starts), ``DUNNING_EXPORT_DIR`` and the knobs below.
Peers: ``ACCOUNTS_ADDR`` (suspend, bar, restore) and ``INVOICING_ADDR`` (late fees and
interest as pending items). Unset, those reactions stay PENDING (and a warning says
so at start) until the service is restarted with the address: nothing is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port


class DunningSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DUNNING_")
    service_name: ClassVar[str] = "dunning"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['dunning']}"
    # The daily run of a date starts once the clock passes this UTC hour of that date.
    run_hour: int = Field(default=1, ge=0, le=23)
    # Days the scheduler catches up after downtime or a test-clock jump (each day once).
    catch_up_days: int = Field(default=35, ge=1, le=366)
    # How often the scheduler looks at the clock (a moved test clock wakes it at once).
    scheduler_interval_seconds: float = Field(default=60.0, gt=0)
    # Pending effects are retried this often; a commit with events wakes the loop at once.
    effects_interval_seconds: float = Field(default=2.0, gt=0)
    # A work message or event a crashed consumer left pending is re-delivered after this.
    claim_idle_ms: int = Field(default=30_000, ge=1000)
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    # Where collections hand-over files go (default: <RECKON_DATA_DIR>/dunning-exports).
    export_dir: Path | None = None
    accounts_addr: str | None = Field(default=None, validation_alias="ACCOUNTS_ADDR")
    invoicing_addr: str | None = Field(default=None, validation_alias="INVOICING_ADDR")

    @field_validator("accounts_addr", "invoicing_addr")
    @classmethod
    def _peer(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_host_port(value)
        return value

    @property
    def effective_export_dir(self) -> Path:
        return self.export_dir or self.data_dir / "dunning-exports"
