"""Planning (event -> queued rows) timed three ways in one run, each in a store of its own.

The workload is a bill run's mail: N ``InvoiceIssued`` events, each for its own customer
(contacts and account links learnt beforehand, not timed), with one webhook endpoint
subscribed, so every event makes an e-mail row, a webhook row, a ``MessageStatusChanged``
outbox row, an invoice number and its inbox row.

- **batched**: ``handlers.plan_events`` on batches of ``batch`` events, one transaction
  each, as the consumer's batch handler runs it (ADR 0082);
- **per event**: ``handlers.plan_event``, one transaction per event (the consumer's
  fallback, and the only path before);
- **floor**: the very rows the batched run wrote (inbox, messages, outbox, invoice numbers),
  read back and inserted raw with one executemany per table, in as many transactions as
  the batched run had: the writes alone, with no reads, no rules, no ORM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, insert, select

from services.common.clock import SystemClock
from services.common.db import make_engine
from services.common.events import EventEnvelope
from services.common.migrations import upgrade_to_head
from services.notifications.adapters.orm import invoice_refs, kit, messages
from services.notifications.adapters.unit_of_work import (
    SqlNotificationsUnitOfWork,
    session_factory,
)
from services.notifications.bootstrap import MIGRATIONS
from services.notifications.domain.model import WebhookEndpoint
from services.notifications.service_layer import handlers


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float

    def line(self, label: str, count: int) -> str:
        return (
            f"  {label:<52} {count / self.wall:8,.0f} events/s   "
            f"CPU {1000 * self.cpu / count:5.2f} ms/event"
        )


def _timed(work: Callable[[], None]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


T = TypeVar("T")


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _event(event_id: str, event_type: str, source: str, payload: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(event_id, event_type, source, "", datetime.now(UTC), payload)


class Store:
    """One database (a SQLite file, or a PostgreSQL schema) with the customers learnt."""

    def __init__(
        self,
        url: str,
        name: str,
        workdir: Path,
        planning: handlers.Planning,
        customers: int,
        batch: int,
    ) -> None:
        if url.startswith("sqlite") or not url:
            self.engine = make_engine(f"sqlite:///{workdir / f'{name}.db'}", instrument=False)
        else:
            schema = f"bench_notifplan_{name}"
            reset = make_engine(url, None, instrument=False)
            with reset.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            reset.dispose()
            self.schema = schema
            self.url = url
            self.engine = make_engine(url, schema, instrument=False)
        upgrade_to_head(self.engine, MIGRATIONS)
        sessions = session_factory(self.engine)
        clock = SystemClock()
        self.uow: Callable[[], SqlNotificationsUnitOfWork] = lambda: SqlNotificationsUnitOfWork(
            sessions, clock=clock
        )
        with self.uow() as unit:
            unit.endpoints.add(WebhookEndpoint(
                "whe_bench", "https://erp.example.com/hook", ["InvoiceIssued"], "whsec_x",
                "ops@example.com", "bench", True, clock.now(),
            ))  # fmt: skip
            unit.commit()
        learnt = [
            event
            for i in range(customers)
            for event in (
                _event(f"evt_c{i}", "CustomerCreated", "accounts", {
                    "customer_id": f"cus_{i}", "email": f"c{i}@example.com",
                    "display_name": f"Customer {i}", "language_code": "en"}),
                _event(f"evt_a{i}", "AccountCreated", "accounts", {
                    "account_id": f"acc_{i}", "customer_id": f"cus_{i}",
                    "time_zone": "Europe/Amsterdam"}),
            )
        ]  # fmt: skip
        for chunk in _chunks(learnt, batch):
            handlers.plan_events(chunk, self.uow(), planning)

    def dispose(self) -> None:
        self.engine.dispose()
        if getattr(self, "schema", None):
            reset = make_engine(self.url, None, instrument=False)
            with reset.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            reset.dispose()


def _invoices(count: int) -> list[EventEnvelope]:
    return [
        _event(f"evt_i{i}", "InvoiceIssued", "invoicing", {
            "invoice_id": f"inv_{i}", "customer_id": f"cus_{i}", "account_id": f"acc_{i}",
            "number": f"INV-{i}", "issue_date": "2027-01-15", "due_date": "2027-01-29",
            "amount_due": {"amount": "121.00", "currency": "EUR"}})
        for i in range(count)
    ]  # fmt: skip


def _written(engine: Engine) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The rows planning wrote (the contacts' own were written before the timing)."""
    with engine.connect() as connection:

        def rows(table: Table, *where: Any) -> list[dict[str, Any]]:
            found = connection.execute(select(table).where(*where)).mappings()
            return [{k: v for k, v in row.items() if k != "seq"} for row in found]

        inbox = kit.processed_events
        return [
            (inbox, rows(inbox, inbox.c.event_id.like("evt_i%"))),
            (messages, rows(messages)),
            (kit.outbox, rows(kit.outbox)),
            (invoice_refs, rows(invoice_refs)),
        ]  # fmt: skip


def bench_planning(
    count: int, batch: int, planning: handlers.Planning, workdir: Path, url: str = ""
) -> list[str]:
    stores = {name: Store(url, name, workdir, planning, count, batch)
              for name in ("batched", "single", "floor")}  # fmt: skip
    try:
        events = _invoices(count)
        planned: list[int] = []

        def batched() -> None:
            for chunk in _chunks(events, batch):
                planned.append(handlers.plan_events(chunk, stores["batched"].uow(), planning))

        def one_by_one() -> None:
            for event in events:
                planned.append(handlers.plan_event(event, stores["single"].uow(), planning))

        batched_time = _timed(batched)
        assert sum(planned) == 2 * count, f"{sum(planned)} messages planned for {count} events"
        planned.clear()
        single_time = _timed(one_by_one)
        assert sum(planned) == 2 * count
        written = _written(stores["batched"].engine)
        chunks = -(-count // batch)
        floor_engine = stores["floor"].engine

        def floor() -> None:
            for part in range(chunks):
                with floor_engine.begin() as connection:
                    for table, rows in written:
                        share = rows[part * len(rows) // chunks : (part + 1) * len(rows) // chunks]
                        if share:
                            connection.execute(insert(table), share)

        floor_time = _timed(floor)
        kind = "SQLite" if not url or url.startswith("sqlite") else "PostgreSQL"
        return [
            f"planning, {count} InvoiceIssued events (an e-mail, a webhook, an outbox row "
            f"each), {kind}:",
            batched_time.line(f"batched: plan_events, {batch} a transaction", count),
            single_time.line("per event: plan_event, a transaction each", count),
            floor_time.line(f"floor: the same rows, raw executemany, {batch} a tx", count),
            f"  batched / per event = {single_time.wall / batched_time.wall:.1f}x; "
            f"batched / floor = {floor_time.wall / batched_time.wall:.2f}",
        ]
    finally:
        for store in stores.values():
            store.dispose()
