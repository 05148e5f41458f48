"""Settings of the rating service: ``RATING_*`` variables plus the shared ones.

``RATING_LISTEN`` (default ``127.0.0.1:50052``), ``RATING_DATABASE_URL`` /
``RATING_DATABASE_SCHEMA``, ``RATING_DROP_DIR`` (a folder the service picks usage
files up from; unset: no drop folder), ``RATING_DROP_POLL_SECONDS``,
``RATING_DROP_PRESET`` (layout of CSV files found there), ``RATING_REJECT_THRESHOLD_PERCENT``
(a file with more rejects fails loudly; ``RATING_REJECT_THRESHOLD_MIN_RECORDS``
sets the file size from which the percentage applies), ``RATING_FUTURE_TOLERANCE_SECONDS`` (clock
skew allowed before an event counts as "in the future"), ``RATING_BATCH_SIZE``
(records rated and stored per transaction) and the field and line caps of the
usage parser.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings


class RatingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RATING_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "rating"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['rating']}"
    drop_dir: Path | None = None
    drop_poll_seconds: float = Field(default=2.0, gt=0, le=3600)
    drop_preset: str = "reckon"
    reject_threshold_percent: Decimal = Field(default=Decimal(5), ge=0, le=100)
    # Files with fewer records fail only when all were rejected (a percentage of 6 is noise).
    reject_threshold_min_records: int = Field(default=20, ge=1)
    future_tolerance_seconds: int = Field(default=300, ge=0)
    batch_size: int = Field(default=5000, ge=1, le=50_000)
    max_line_bytes: int = Field(default=16_384, ge=256)
    max_field_chars: int = Field(default=1024, ge=16)
    # Where uploads are spooled while they arrive (default: <data dir>/rating-spool).
    spool_dir: Path | None = None

    @field_validator("drop_preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from services.rating.service_layer.usage_formats import PRESETS

        if value not in PRESETS:
            raise ValueError(f"unknown preset; expected one of {', '.join(sorted(PRESETS))}")
        return value

    @property
    def effective_spool_dir(self) -> Path:
        return self.spool_dir or (self.data_dir / "rating-spool")
