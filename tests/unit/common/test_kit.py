"""Clock, config loader, errors and page tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic_settings import SettingsConfigDict

from services.common.clock import ManualClock, ensure_utc
from services.common.config import ConfigError, ServiceSettings, load_settings
from services.common.errors import InvalidArgument, Violations
from services.common.ids import new_id
from services.common.proto_convert import decode_page_token, encode_page_token


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")
    service_name = "demo"


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(datetime(2026, 1, 31, tzinfo=UTC))
    assert clock.advance(timedelta(days=1)) == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime(2026, 1, 1, tzinfo=UTC))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ensure_utc(datetime(2026, 1, 1))


def test_missing_and_malformed_settings_name_each_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RECKON_SERVICE_TOKEN", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEMO_LISTEN", "nowhere")
    with pytest.raises(ConfigError) as failure:
        load_settings(DemoSettings)
    message = str(failure.value)
    assert "RECKON_SERVICE_TOKEN: is required" in message
    assert "REDIS_URL: is required" in message
    assert "DEMO_LISTEN" in message


def test_defaults_use_a_sqlite_file_per_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", "x" * 20)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RECKON_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings(DemoSettings)
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/demo.db"
    assert settings.effective_database_schema is None
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/reckon")
    assert load_settings(DemoSettings).effective_database_schema == "demo"


def test_outbox_retention_defaults_to_a_day_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECKON_SERVICE_TOKEN", "x" * 20)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.delenv("RECKON_OUTBOX_RETENTION_HOURS", raising=False)
    assert load_settings(DemoSettings).outbox_retention == timedelta(hours=24)
    monkeypatch.setenv("RECKON_OUTBOX_RETENTION_HOURS", "72")
    assert load_settings(DemoSettings).outbox_retention == timedelta(hours=72)
    monkeypatch.setenv("RECKON_OUTBOX_RETENTION_HOURS", "0")
    with pytest.raises(ConfigError, match="RECKON_OUTBOX_RETENTION_HOURS"):
        load_settings(DemoSettings)


def test_violations_collect_every_problem_with_paths() -> None:
    violations = Violations()
    violations.require("", "name")
    with violations.nested("account") as account:
        account.check(False, "bill_cycle_day", "must be 1..28")
    with pytest.raises(InvalidArgument) as failure:
        violations.raise_if_any()
    assert [v.field for v in failure.value.violations] == ["name", "account.bill_cycle_day"]


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    token = encode_page_token({"after": "acc_1"})
    violations = Violations()
    assert decode_page_token(token, violations) == {"after": "acc_1"}
    assert decode_page_token("%%%", violations) is None
    assert [v.field for v in violations.items] == ["page_token"]


def test_ids_are_prefixed_unique_and_time_ordered() -> None:
    ids = [new_id("acc") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("acc_") and len(i) == 30 for i in ids)
