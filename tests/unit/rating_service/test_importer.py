"""The import pipeline on an in-memory unit of work: outcomes, threshold, resume, events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.events import EventEnvelope
from services.rating.service_layer.accounts_view import apply_account_event
from services.rating.service_layer.catalog import apply_catalog
from services.rating.service_layer.events import UsageImportFailed, UsageRated, UsageRejected
from services.rating.service_layer.imports import ImportLimits, RatingMetrics, UsageImporter
from services.rating.service_layer.model import ImportStatus
from services.rating.service_layer.rerating import rerate
from services.rating.service_layer.tariffs import TariffCache
from services.rating.service_layer.usage_formats import ImportOptions
from tests.unit.rating_service.fakes import FakeStore, FakeUnitOfWork

CATALOG = """
products: [{code: voice, unit: second}]
destinations: [{name: NL, prefixes: ["31"]}]
tax_regions: [{code: NL, taxes: [{code: VAT, name: BTW, percent: "21"}]}]
plans:
  - code: basic
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        rates:
          - {id: nl, service: voice, destination: NL, first_increment: 60, next_increment: 60,
             connection_fee: "0.05", prices: {"*": {first: "0.10", next: "0.10"}}}
"""
HEADER = "record_id,account_id,service,destination,event_time,quantity\n"


def envelope(event_type: str, payload: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        f"evt-{event_type}-{payload['account_id']}",
        event_type,
        "accounts",
        payload["account_id"],
        datetime(2026, 1, 1, tzinfo=UTC),
        payload,
    )


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def importer(store: FakeStore) -> UsageImporter:
    clock = ManualClock(datetime(2026, 3, 10, tzinfo=UTC))

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(store)

    tariffs = TariffCache(uow, refresh_seconds=3600)
    apply_catalog(uow, tariffs, clock, document=CATALOG)
    for event_type, payload in (
        (
            "AccountCreated",
            {
                "account_id": "a1",
                "customer_id": "c1",
                "currency": "EUR",
                "time_zone": "Europe/Amsterdam",
                "tax_region": "NL",
            },
        ),
        ("SubscriptionChanged", {"account_id": "a1", "plan_code": "basic"}),
    ):
        apply_account_event(uow, clock, envelope(event_type, payload))
    limits = ImportLimits(
        batch_size=2,
        future_tolerance=timedelta(minutes=5),
        reject_threshold_percent=Decimal(10),
        reject_threshold_min_records=5,
    )
    return UsageImporter(uow, tariffs, clock, limits, RatingMetrics())


def write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "usage.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def call(n: int, *, account: str = "a1", seconds: int = 61, day: int = 2) -> str:
    return f"r{n},{account},voice,+31201234567,2026-03-{day:02d}T09:00:00Z,{seconds}"


def test_every_record_is_rated_rejected_or_counted(
    importer: UsageImporter, store: FakeStore, tmp_path: Path
) -> None:
    path = write(
        tmp_path, [call(1), call(2), call(1), call(3, account="zz"), call(4, day=20), call(5)]
    )
    result = importer.import_path(path, "usage.csv", ImportOptions())
    imported = result.file
    # 61 s on a 60/60 landline rate: 2 x 0.10 + 0.05 = 0.25 net, VAT 0.0525 -> 0.05, 0.30.
    assert (imported.records, imported.rated, imported.rejected) == (6, 3, 3)
    assert imported.reason_counts() == {"DUPLICATE": 1, "UNKNOWN_ACCOUNT": 1, "FUTURE_EVENT": 1}
    assert imported.totals() == {"EUR": Decimal("0.90")}
    assert imported.status == ImportStatus.FAILED  # 3 of 6 > 10%, file of >= 5 records
    assert [(r.line, r.reason) for r in store.rejects] == [
        (4, "DUPLICATE"),
        (5, "UNKNOWN_ACCOUNT"),
        (6, "FUTURE_EVENT"),
    ]
    events = store.published
    # The file failed: its 3 ratings are held back, not published (issue 9 item 7).
    assert not [e for e in events if isinstance(e, UsageRated)]
    held = [e for _, e in store.held]
    assert sum(len(e.records) for e in held if isinstance(e, UsageRated)) == 3
    assert imported.held
    assert any(isinstance(e, UsageRejected) for e in events)
    [failed] = [e for e in events if isinstance(e, UsageImportFailed)]
    assert failed.held_records == 3


def test_the_same_file_twice_rates_nothing_new(
    importer: UsageImporter, store: FakeStore, tmp_path: Path
) -> None:
    path = write(tmp_path, [call(1), call(2)])
    first = importer.import_path(path, "usage.csv", ImportOptions())
    again = importer.import_path(path, "renamed.csv", ImportOptions())
    assert again.duplicate_of == first.file.file_id
    assert len(store.rated) == 2


def test_an_interrupted_import_resumes_after_the_last_committed_line(
    importer: UsageImporter, store: FakeStore, tmp_path: Path
) -> None:
    path = write(tmp_path, [call(n) for n in range(1, 6)])
    first = importer.import_path(path, "usage.csv", ImportOptions())
    # Pretend the process died after the first batch (lines 2-3) was committed.
    interrupted = store.imports[first.file.file_id]
    interrupted.status = ImportStatus.IMPORTING
    interrupted.committed_line = 3
    store.rated = [r for r in store.rated if (r.line or 0) <= 3]
    interrupted.rated, interrupted.records = 2, 2
    resumed = importer.import_path(path, "usage.csv", ImportOptions())
    assert resumed.file.file_id == first.file.file_id
    assert resumed.file.status == ImportStatus.COMPLETED
    assert sorted(r.record_id for r in store.rated) == ["r1", "r2", "r3", "r4", "r5"]
    assert resumed.file.rated == 5
    assert resumed.file.rejected == 0


ALLOWANCE_CATALOG = """
products: [{code: voice, unit: second}, {code: sms, unit: event}]
destinations: [{name: NL, prefixes: ["31"]}]
tax_regions: [{code: NL, taxes: [{code: VAT, name: BTW, percent: "21"}]}]
plans:
  - code: basic
    currency: EUR
    versions:
      - version: 1
        valid_from: 2026-01-01T00:00:00Z
        allowances: [{code: incl-voice, service: voice, units: 120}]
        rates:
          - {id: nl, service: voice, destination: NL, first_increment: 60, next_increment: 60,
             prices: {"*": {first: "0.10", next: "0.10"}}}
          - id: sms
            service: sms
            model: {kind: graduated, tiers: [{up_to: 2, unit_price: "0.10"},
                                             {unit_price: "0.05"}]}
"""


def test_allowances_and_tiers_follow_the_bill_cycle(store: FakeStore, tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 5, 1, tzinfo=UTC))

    def uow() -> FakeUnitOfWork:
        return FakeUnitOfWork(store)

    tariffs = TariffCache(uow, refresh_seconds=3600)
    apply_catalog(uow, tariffs, clock, document=ALLOWANCE_CATALOG)
    apply_account_event(
        uow,
        clock,
        envelope(
            "AccountCreated",
            {
                "account_id": "a1",
                "customer_id": "c1",
                "currency_code": "EUR",
                "time_zone": "Europe/Amsterdam",
                "tax_region": "NL",
                "bill_cycle_day": 1,
            },
        ),
    )
    apply_account_event(
        uow,
        clock,
        envelope(
            "SubscriptionChanged",
            {
                "account_id": "a1",
                "kind": "CREATED",
                "plan_code": "basic",
                "effective_time": "2026-01-01T00:00:00+00:00",
            },
        ),
    )
    importer = UsageImporter(uow, tariffs, clock, ImportLimits(batch_size=2), RatingMetrics())
    path = tmp_path / "cycle.csv"
    path.write_text(
        HEADER
        + "".join(
            f"{row}\n"
            for row in [
                # 90 s: first increment (60) and one more (60) drawn from the 120 s included.
                "v1,a1,voice,+31201234567,2026-03-02T09:00:00Z,90",
                # Allowance used up: 61 s = 2 x 0.10 = 0.20 net, VAT 0.04, 0.24 gross.
                "v2,a1,voice,+31201234567,2026-03-03T09:00:00Z,61",
                # A new cycle (April): 30 s drawn from a fresh allowance.
                "v3,a1,voice,+31201234567,2026-04-01T09:00:00Z,30",
                # Graduated SMS: 1st at 0.10 -> 0.12 gross; then 3 more: 2nd at 0.10, 3rd and 4th at
                # 0.05 -> 0.20 net, VAT 0.042 -> 0.04, 0.24 gross.
                "s1,a1,sms,,2026-03-04T09:00:00Z,1",
                "s2,a1,sms,,2026-03-05T09:00:00Z,3",
            ]
        )
    )
    result = importer.import_path(path, "cycle.csv", ImportOptions())
    assert result.file.rejected == 0
    gross = {r.record_id: Decimal(r.amount_nanos) / 10**9 for r in store.rated}
    assert gross == {
        "v1": 0,
        "v2": Decimal("0.24"),
        "v3": 0,
        "s1": Decimal("0.12"),
        "s2": Decimal("0.24"),
    }
    assert {r.record_id: r.allowance_units for r in store.rated if r.service == "voice"} == {
        "v1": 120,
        "v2": 0,
        "v3": 60,
    }
    # Allowance drawn per cycle, and chargeable units (for packages and tiers).
    assert store.counters == {
        ("a1", "2026-03-01", "allowance:incl-voice"): 120,
        ("a1", "2026-04-01", "allowance:incl-voice"): 60,
        ("a1", "2026-03-01", "usage:voice"): 120,
        ("a1", "2026-03-01", "usage:sms"): 4,
    }

    # A correction: 180 s included. Re-rating March draws again in event-time order:
    # v1 keeps 120 s, v2 gets the first 60 s free and pays one more increment:
    # 0.10 net, VAT 0.021 -> 0.02, 0.12 gross.
    apply_catalog(
        uow, tariffs, clock, document=ALLOWANCE_CATALOG.replace("units: 120", "units: 180")
    )
    run = rerate(
        uow,
        tariffs,
        clock,
        account_id="a1",
        start=datetime(2026, 3, 1, tzinfo=UTC),
        end=datetime(2026, 4, 1, tzinfo=UTC),
    )
    current = {r.record_id: Decimal(r.amount_nanos) / 10**9 for r in store.rated if r.is_current}
    assert current["v2"] == Decimal("0.12")
    assert json.loads(run.totals)["EUR"]["difference"] == "-0.12"
    assert store.counters[("a1", "2026-03-01", "allowance:incl-voice")] == 180
    assert store.counters[("a1", "2026-04-01", "allowance:incl-voice")] == 60  # untouched
