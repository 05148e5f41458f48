"""Consumers are idempotent: a redelivered event changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.invoicing.adapters.orm import pending_items, rated_usage, segments
from services.invoicing.adapters.unit_of_work import SqlInvoicingUnitOfWork, session_factory
from services.invoicing.bootstrap import MIGRATIONS
from services.invoicing.service_layer import ingest
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork
from tests.conftest import TestDatabase


@pytest.fixture
def uow_factory(
    database: TestDatabase,
) -> Iterator[tuple[Callable[[], InvoicingUnitOfWork], Engine]]:
    engine = make_engine(database.url, database.schema, instrument=False)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    clock = ManualClock(datetime(2027, 1, 10, tzinfo=UTC))

    def factory() -> InvoicingUnitOfWork:
        return SqlInvoicingUnitOfWork(sessions, clock=clock)

    yield factory, engine
    engine.dispose()


def test_the_same_event_twice_is_applied_once(
    uow_factory: tuple[Callable[[], InvoicingUnitOfWork], Engine],
) -> None:
    factory, engine = uow_factory
    subscription = {
        "subscription_id": "sub_1",
        "account_id": "acc_1",
        "customer_id": "cus_1",
        "kind": "CREATED",
        "plan_code": "basic",
        "old_plan_code": "basic",
        "new_plan_code": "basic",
        "add_on_code": "",
        "add_on_quantity": 0,
        "effective_time": "2027-01-10T09:00:00+00:00",
        "currency_code": "EUR",
        "time_zone": "Europe/Amsterdam",
        "bill_cycle_day": 1,
    }
    usage = {
        "records": [
            {
                "record_id": "r1",
                "account_id": "acc_1",
                "service": "voice",
                "quantity": 60,
                "unit": "second",
                "net": {"amount": "0.10", "currency": "EUR"},
                "event_time": "2027-01-11T09:00:00+00:00",
            }
        ]
    }
    for _ in range(2):
        assert ingest.handle(factory, "evt_sub", "SubscriptionChanged", subscription) in (
            True,
            False,
        )
        assert ingest.handle(factory, "evt_use", "UsageRated", usage) in (True, False)
    assert ingest.handle(factory, "evt_sub", "SubscriptionChanged", subscription) is False
    with engine.connect() as connection:
        counts = [
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (segments, pending_items, rated_usage)
        ]
    # One plan segment; two pending items (the activation fee and 22/31 days of basic); one record.
    assert counts == [1, 2, 1]
