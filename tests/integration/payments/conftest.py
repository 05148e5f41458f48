"""The payments use cases on a real database (SQLite and PostgreSQL) and the sandbox PSP.

Invoicing and charging sit behind ports; here they are the in-memory fakes of
``fakes.py`` unless a test wires the real service. Time is a ManualClock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.migrations import upgrade_to_head
from services.common.money import Money
from services.payments.adapters.orm import metadata
from services.payments.adapters.sandbox import SandboxProvider
from services.payments.adapters.unit_of_work import SqlPaymentsUnitOfWork, session_factory
from services.payments.domain.model import MethodKind, Payment, PaymentMethod, PaymentState
from services.payments.domain.provider import CardDetails
from services.payments.service_layer.collection import Collector
from services.payments.service_layer.commands import AddPaymentMethod
from services.payments.service_layer.methods import MethodsService
from services.payments.service_layer.ports import PaymentsUnitOfWork
from tests.conftest import TestDatabase
from tests.integration.payments.fakes import FakeCharging, FakeInvoicing

MIGRATIONS = "services.payments.adapters.migrations"


@dataclass
class PaymentsWorld:
    engine: Engine
    clock: ManualClock
    sandbox: SandboxProvider
    invoicing: FakeInvoicing
    charging: FakeCharging
    collector: Collector
    methods: MethodsService

    def uow(self) -> PaymentsUnitOfWork:
        return self.collector.uow_factory()

    def card(
        self, account_id: str, number: str = "4242424242424242", **extra: Any
    ) -> PaymentMethod:
        return self.methods.add_method(
            AddPaymentMethod(
                account_id=account_id,
                customer_id=f"cus_{account_id}",
                currency="EUR",
                kind=MethodKind.CARD,
                card=CardDetails(number, 12, 2030, "123"),
                **extra,
            )
        )

    def payment(self, payment_id: str) -> Payment:
        with self.uow() as uow:
            found = uow.payments.get(payment_id)
            assert found is not None
            return found

    def state(self, payment_id: str) -> PaymentState:
        return self.payment(payment_id).state

    def row_counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {
                name: int(connection.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in metadata.tables.items()
            }

    def outbox_types(self) -> list[str]:
        with self.engine.connect() as connection:
            table = metadata.tables["outbox"]
            return list(connection.scalars(select(table.c.event_type).order_by(table.c.seq)))

    def outbox_payloads(self) -> list[str]:
        with self.engine.connect() as connection:
            table = metadata.tables["outbox"]
            return list(connection.scalars(select(table.c.envelope).order_by(table.c.seq)))


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


@pytest.fixture
def world(database: TestDatabase) -> Iterator[PaymentsWorld]:
    engine = make_engine(database.url, database.schema)
    upgrade_to_head(engine, MIGRATIONS)
    sessions = session_factory(engine)
    clock = ManualClock(datetime(2026, 3, 1, 9, tzinfo=UTC))
    sandbox = SandboxProvider(clock)
    invoicing = FakeInvoicing()
    charging = FakeCharging()

    def uow_factory() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(sessions, clock=clock)

    collector = Collector(uow_factory, sandbox, invoicing, charging, clock)
    methods = MethodsService(uow_factory, sandbox, invoicing, clock)
    try:
        yield PaymentsWorld(engine, clock, sandbox, invoicing, charging, collector, methods)
    finally:
        engine.dispose()


TODAY = date(2026, 3, 1)
