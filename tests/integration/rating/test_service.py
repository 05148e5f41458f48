"""The rating service as a process part: drop folder, account view from the event stream,
migrations matching the mapping, start-up configuration errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reckon.rating.v1 import rating_pb2, rating_pb2_grpc
from services.accounts.domain.events import (
    AccountCreated,
    SubscriptionChanged,
    SubscriptionChangeKind,
)
from services.common.events import EventEnvelope, stream_for
from services.rating.adapters.orm import metadata
from services.rating.entrypoints.main import RunningRating
from tests.integration.rating.conftest import (
    SAMPLES,
    account_event,
    add_account,
    apply_sample_catalog,
)

HEADER = "record_id,account_id,service,destination,event_time,quantity\n"


async def test_drop_folder_picks_files_up_once_and_files_them(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_demo")
    drop = rating.app.drop_folder
    assert drop is not None
    drop.prepare()
    sample = (SAMPLES / "cdr" / "conference-legs.csv").read_bytes()
    (drop.root / "legs.csv").write_bytes(sample)
    (drop.root / "upload.csv.part").write_bytes(b"still copying")
    assert drop.scan_once() == []  # first sight: wait until the file is stable
    [result] = drop.scan_once()
    assert (result.file.rated, result.file.rejected) == (5, 1)
    assert (drop.processed / "legs.csv").exists()
    summary = json.loads((drop.processed / "legs.csv.result.json").read_text())
    assert summary["rejects_by_reason"] == {"NO_TARIFF": 1}
    assert (drop.root / "upload.csv.part").exists()  # temporary names are left alone
    # The same file dropped again (another name) rates nothing twice.
    (drop.root / "legs-again.csv").write_bytes(sample)
    drop.scan_once()
    [again] = drop.scan_once()
    assert again.duplicate_of == result.file.file_id
    assert (drop.processed / "legs-again.csv").exists()
    # A file that fails loudly (every record rejected) lands in failed/.
    (drop.root / "strangers.csv").write_text(
        HEADER + "s1,acc_nobody,voice,0205550101,2026-03-02T09:00:00Z,60\n"
    )
    drop.scan_once()
    [failed] = drop.scan_once()
    assert failed.failed
    assert (drop.failed / "strangers.csv").exists()


async def test_drop_folder_waits_for_a_catalog(rating: RunningRating) -> None:
    drop = rating.app.drop_folder
    assert drop is not None
    drop.prepare()
    (drop.root / "early.csv").write_text(HEADER)
    drop.scan_once()
    assert drop.scan_once() == []
    assert (drop.root / "early.csv").exists()


async def test_account_view_follows_the_accounts_stream_idempotently(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_sample_catalog(stub)
    redis = rating.app.redis
    # The payloads the accounts service really publishes (its domain events).
    when = datetime(2026, 2, 1, tzinfo=UTC)
    facts = {
        "account_id": "acc_stream",
        "customer_id": "cus_1",
        "reseller_id": "",
        "group_id": "",
        "currency_code": "EUR",
        "time_zone": "Europe/Amsterdam",
        "bill_cycle_day": 1,
        "tax_region": "NL",
        "payment_terms_days": 14,
        "payment_mode": "POSTPAID",
        "credit_limit": None,
        "parent_account_id": "",
        "state": "ACTIVE",
    }

    def change(kind: SubscriptionChangeKind, plan: str, at: datetime) -> SubscriptionChanged:
        return SubscriptionChanged(
            subscription_id="sub_1",
            account_id="acc_stream",
            customer_id="cus_1",
            kind=kind,
            plan_code=plan,
            old_plan_code=plan,
            new_plan_code=plan,
            add_on_code="",
            add_on_quantity=0,
            effective_time=at,
            period_start=at,
            period_end=at,
            currency_code="EUR",
            time_zone="Europe/Amsterdam",
            bill_cycle_day=1,
            reason="",
        )

    def envelope_of(event: AccountCreated | SubscriptionChanged) -> EventEnvelope:
        return account_event(event.event_type, event.payload())

    created = envelope_of(AccountCreated(**facts, create_time=when))  # type: ignore[arg-type]
    subscribed = envelope_of(change(SubscriptionChangeKind.CREATED, "conference-pro", when))
    scheduled = envelope_of(
        change(
            SubscriptionChangeKind.CANCEL_SCHEDULED,
            "conference-pro",
            datetime(2026, 3, 1, tzinfo=UTC),
        )
    )
    cancelled = envelope_of(
        change(SubscriptionChangeKind.CANCELLED, "conference-pro", datetime(2026, 4, 1, tzinfo=UTC))
    )
    # The second ``subscribed`` is a redelivery of the same event.
    for envelope in (created, subscribed, subscribed, scheduled, cancelled):
        await redis.xadd(stream_for("accounts"), {"envelope": envelope.to_json()})
    consumer = rating.app.accounts_consumer
    await consumer.ensure_groups()
    assert await consumer.consume_once(block_ms=100) == 5
    with rating.app.uow_factory() as uow:
        account = uow.accounts.get("acc_stream")
    assert account is not None
    assert (account.currency, account.time_zone, account.tax_region) == (
        "EUR",
        "Europe/Amsterdam",
        "NL",
    )
    assert [a.plan_code for a in account.assignments] == ["conference-pro", ""]
    assert account.plan_at(datetime(2026, 1, 15, tzinfo=UTC)) is None
    assert account.plan_at(datetime(2026, 3, 15, tzinfo=UTC)) == "conference-pro"
    assert account.plan_at(datetime(2026, 4, 2, tzinfo=UTC)) is None  # cancelled


async def test_plan_change_applies_from_its_effective_time(
    rating: RunningRating, stub: rating_pb2_grpc.RatingServiceStub
) -> None:
    await apply_sample_catalog(stub)
    add_account(rating, "acc_moving", since=datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    rows = HEADER + (
        "before,acc_moving,voice,0205550101,2026-03-02T09:00:00Z,60\n"
        "after,acc_moving,voice,0205550101,2026-03-02T10:00:00Z,60\n"
    )

    def chunks() -> Iterator[rating_pb2.ImportUsageRequest]:
        yield rating_pb2.ImportUsageRequest(file_name="moving.csv", chunk=rows.encode())

    reply = await stub.ImportUsage(chunks())
    assert reply.file.rated == 1
    assert [c.reason for c in reply.file.rejects_by_reason] == ["NO_PLAN"]


def test_migrations_create_exactly_the_mapped_tables(rating: RunningRating) -> None:
    with rating.app.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_service_refuses_to_start_without_configuration(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RECKON_", "REDIS_", "RATING_"))
    }
    env["RATING_REJECT_THRESHOLD_PERCENT"] = "250"
    process = subprocess.run(
        [sys.executable, "-m", "services.rating"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 2
    for name in ("RECKON_SERVICE_TOKEN", "REDIS_URL", "RATING_REJECT_THRESHOLD_PERCENT"):
        assert name in process.stderr
    assert "Traceback" not in process.stderr
