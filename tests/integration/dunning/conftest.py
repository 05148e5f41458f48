"""The dunning service's SQL side on SQLite and PostgreSQL, driven through its handlers.

``dunning`` gives a migrated database (``database`` fixture), a ManualClock, the
sample default policy applied and helpers that feed invoicing's, payments' and
accounts' events into the projection exactly as the consumers do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from services.common.clock import ManualClock
from services.common.db import make_engine
from services.common.ids import new_id
from services.common.migrations import upgrade_to_head
from services.dunning.adapters.orm import dunning_reactions, kit
from services.dunning.adapters.unit_of_work import SqlDunningUnitOfWork, session_factory
from services.dunning.bootstrap import MIGRATIONS
from services.dunning.service_layer import handlers, runs
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork, Run
from tests.conftest import TestDatabase

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "dunning-policy.yaml"
DUE = date(2027, 3, 1)


@dataclass
class Dunning:
    engine: Engine
    clock: ManualClock
    database: TestDatabase
    sessions: Any
    seq: int = 0
    fees: list[tuple[str, str]] = field(default_factory=list)

    def uow(self) -> DunningUnitOfWork:
        return SqlDunningUnitOfWork(self.sessions, clock=self.clock)

    def day(self, n: int) -> date:
        """Move the clock to day ``n`` after the due date (09:00 UTC) and return that date."""
        target = datetime.combine(DUE + timedelta(days=n), datetime.min.time(), UTC)
        target += timedelta(hours=9)
        if target > self.clock.now():
            self.clock.set(target)
        return target.date()

    def event(self, event_type: str, **payload: Any) -> bool:
        self.seq += 1
        return handlers.on_event(
            self.uow(), f"evt_{self.seq}_{new_id('x')}", event_type, payload, self.clock.now()
        )

    def invoice(
        self,
        invoice_id: str,
        account_id: str = "acc_1",
        *,
        amount: str = "100.00",
        due: date = DUE,
        status: str = "OPEN",
        event_type: str = "InvoiceIssued",
        amount_due: str | None = None,
        disputed: str = "0",
        customer_id: str = "cus_1",
    ) -> None:
        self.event(
            event_type,
            invoice_id=invoice_id,
            account_id=account_id,
            customer_id=customer_id,
            currency="EUR",
            status=status,
            total={"amount": amount, "currency": "EUR"},
            amount_due={"amount": amount if amount_due is None else amount_due, "currency": "EUR"},
            disputed_amount={"amount": disputed, "currency": "EUR"},
            due_date=due.isoformat(),
            issue_date=(due - timedelta(days=14)).isoformat(),
        )

    def run(self, day: int) -> Run:
        return runs.run_inline(self.uow, self.day(day))

    def reactions(
        self, account_id: str = "acc_1", *, bookkeeping: bool = False
    ) -> list[tuple[int, str, str]]:
        """(level, kind, status) of the account's reactions; the RECORD_LEVEL rows (each
        invoice's level told to invoicing) only with ``bookkeeping``."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    dunning_reactions.c.level, dunning_reactions.c.kind, dunning_reactions.c.status
                )
                .where(
                    dunning_reactions.c.account_id == account_id,
                    dunning_reactions.c.kind != ((bookkeeping and "-") or "RECORD_LEVEL"),
                )
                .order_by(
                    dunning_reactions.c.create_time,
                    dunning_reactions.c.level,
                    dunning_reactions.c.kind,
                )
            ).all()
        return [(r.level, r.kind, r.status) for r in rows]

    def events(self, event_type: str) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(kit.outbox.c.envelope)
                .where(kit.outbox.c.event_type == event_type)
                .order_by(kit.outbox.c.seq)
            ).all()
        return [json.loads(r.envelope)["payload"] for r in rows]


@pytest.fixture
def dunning(database: TestDatabase) -> Iterator[Dunning]:
    engine = make_engine(database.url, database.schema)
    upgrade_to_head(engine, MIGRATIONS)
    clock = ManualClock(datetime(2027, 2, 1, 9, tzinfo=UTC))
    world = Dunning(engine, clock, database, session_factory(engine))
    handlers.apply_policy(world.uow(), SAMPLE.read_text())
    yield world
    engine.dispose()
