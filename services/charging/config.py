"""Settings of the charging service: ``CHARGING_*`` variables plus the shared ones.

``CHARGING_LISTEN`` (default ``127.0.0.1:50053``), ``CHARGING_DATABASE_URL`` /
``CHARGING_DATABASE_SCHEMA``, ``CHARGING_WORKERS`` (server processes sharing the
port with SO_REUSEPORT; background work runs in the first), ``CHARGING_BALANCE_REDIS_URL``
(balances in a Redis of their own; the event bus stays on ``REDIS_URL``),
``CHARGING_REDIS_CLUSTER`` (that Redis, or ``REDIS_URL``, names one node of a Redis
Cluster), grant validity and grace,
default quotas, the idempotency window, the sweeper's cadence and index shards,
the rebuild fence and the ledger writer's bounds, bucket-expiry warnings, the
voucher secret (default: derived from the service token),
``CHARGING_REMEMBERED_SESSIONS`` (open sessions whose priced position a worker
keeps between reports, default 100,000; ADR 0019), ``CHARGING_BATCH_WAIT_TURNS``
(event-loop turns a shallow Redis batch or ledger commit waits for more requests:
default 0; 3 cut a unary Update's CPU by about a quarter at the price of p99
latency, ADR 0019) and ``CHARGING_TARIFFS``: a
JSON object of in-memory tariffs used when no rating service is wired in, e.g.
``{"voice": {"price": "0.10", "currency": "EUR", "per_units": 60, "increment": 60}}``.
Peer: ``RATING_ADDR`` (host:port of the rating service, or a gRPC target naming its
replicas: ``ipv4:10.0.0.1:50052,10.0.0.2:50052``, ``dns:///rating:50052``; calls are
spread round-robin and wait for a ready replica, ADR 0052). When set, money-priced
services are priced by rating's ``Quote``/``UnitsForAmount`` (RAT-8), each call
bounded by ``CHARGING_RATING_TIMEOUT_SECONDS``; unset, the in-memory tariffs are
used and a warning says so at start.
"""

from __future__ import annotations

import json
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import DEFAULT_PORTS, ServiceSettings, parse_host_port


class ChargingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CHARGING_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "charging"

    listen: str = f"127.0.0.1:{DEFAULT_PORTS['charging']}"
    workers: int = Field(default=1, ge=1, le=64)
    redis_cluster: bool = False
    # Balances and reservations in a Redis of their own (e.g. a Redis Cluster sharded by
    # account), the event bus staying on the suite's REDIS_URL (ADR 0059). Unset: one Redis.
    balance_redis_url: str | None = None

    validity_seconds: int = Field(default=300, ge=1, le=86_400)
    grace_seconds: int = Field(default=30, ge=0, le=3_600)
    default_quota_time_seconds: int = Field(default=60, ge=1)
    default_quota_volume_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    default_quota_units: int = Field(default=1, ge=1)
    idempotency_window_seconds: int = Field(default=86_400, ge=60)
    # Event-loop turns a Redis batch and a ledger commit wait for more requests (ADR 0019).
    batch_wait_turns: int = Field(default=0, ge=0, le=100)
    # Open sessions whose priced position a worker remembers between reports (ADR 0019).
    remembered_sessions: int = Field(default=100_000, ge=0, le=10_000_000)
    # How long a worker trusts the account it found for a subscriber's number without
    # reading SQL again (other workers' consumers may have moved it; ADR 0058).
    subscriber_cache_seconds: float = Field(default=30.0, ge=0, le=3_600)

    sweep_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    sweep_lease_ms: int = Field(default=30_000, ge=100)
    sweep_batch: int = Field(default=200, ge=1, le=10_000)
    index_shards: int = Field(default=16, ge=1, le=1024)
    journal_drain_ms: int = Field(default=30_000, ge=100)
    backstop_interval_seconds: float = Field(default=300.0, gt=0)

    rebuild_fence_ms: int = Field(default=5_000, ge=0)
    ledger_stale_seconds: float = Field(default=1.5, gt=0)
    ledger_timeout_ms: int = Field(default=2_000, ge=100)

    bucket_expiry_warning_hours: int = Field(default=72, ge=0)
    maintenance_interval_seconds: float = Field(default=30.0, gt=0)
    # A balance checkpoint after this many ledger entries of an account (ADR 0036).
    checkpoint_entries: int = Field(default=10_000, ge=1)

    voucher_secret: SecretStr | None = None
    tariffs: str = ""
    # The rating service that prices money-priced services (unset: CHARGING_TARIFFS).
    rating_addr: str | None = Field(default=None, validation_alias="RATING_ADDR")
    rating_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    @field_validator("balance_redis_url")
    @classmethod
    def _balance_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://host:port/db, rediss:// or unix://")
        return value

    @field_validator("rating_addr")
    @classmethod
    def _rating_addr(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None:
            parse_host_port(value)
        return value

    @field_validator("tariffs")
    @classmethod
    def _tariffs_json(cls, value: str) -> str:
        if value.strip():
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object of service -> tariff")
        return value

    @property
    def voucher_key(self) -> bytes:
        secret = self.voucher_secret or self.service_token
        return b"reckon-charging-vouchers:" + secret.get_secret_value().encode()
