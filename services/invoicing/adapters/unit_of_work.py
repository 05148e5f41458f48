"""The SQL unit of work of invoicing: the kit's outbox-writing unit plus the repositories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.propagate import inject
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.events import EventEnvelope
from services.common.ids import new_id
from services.common.sql_uow import SqlUnitOfWork
from services.invoicing.adapters.batch_repository import SqlBatch
from services.invoicing.adapters.billing_repositories import (
    SqlBillRuns,
    SqlCreditNotes,
    SqlDisputes,
)
from services.invoicing.adapters.invoice_repository import SqlInvoices
from services.invoicing.adapters.notification_repository import SqlInvoiceNotifications
from services.invoicing.adapters.orm import kit
from services.invoicing.adapters.repositories import (
    SqlAccountCredit,
    SqlNumbers,
    SqlParties,
    SqlPendingItems,
    SqlSubscriptions,
    SqlUsage,
)
from services.invoicing.service_layer.billruns import WORK_STREAM, BillRunWork
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork

SOURCE = "invoicing"  # events go to the stream reckon:events:invoicing
_COPY_AT_LEAST = 20  # outbox rows from which one COPY beats an INSERT per row


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


class SqlInvoicingUnitOfWork(SqlUnitOfWork, InvoicingUnitOfWork):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sessions, kit, source=SOURCE, clock=clock, after_commit=after_commit)
        self.clock = clock

    def _insert_outbox(self, rows: list[dict[str, Any]]) -> None:
        # A bill-run message writes a few events per invoice (hundreds at once): on
        # PostgreSQL one COPY into the outbox, in the same transaction, instead of an
        # INSERT per row (ADR 0060). Few rows keep the plain insert.
        if len(rows) < _COPY_AT_LEAST or self.session.get_bind().dialect.name != "postgresql":
            super()._insert_outbox(rows)
            return
        names = ("event_id", "event_type", "stream", "envelope", "created_at")
        cursor = self.session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY outbox ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[name] for name in names])

    def _write_outbox(self) -> None:
        # Bill-run work goes to its own stream, not the public event stream: the same
        # outbox (so work is queued in the transaction that creates it, ADR 0022).
        work = [e for e in self.pending_events if isinstance(e, BillRunWork)]
        if not work:
            super()._write_outbox()
            return
        self.pending_events = [e for e in self.pending_events if not isinstance(e, BillRunWork)]
        if self.pending_events:
            super()._write_outbox()
        now = self.clock.now()
        carrier: dict[str, str] = {}
        inject(carrier)
        rows = []
        for item in work:
            envelope = EventEnvelope(
                event_id=new_id("wrk"),
                event_type=item.event_type,
                source=SOURCE,
                aggregate_id=item.aggregate_id,
                occurred_at=now,
                payload=item.payload(),
                trace_context=carrier,
            )
            rows.append(
                {
                    "event_id": envelope.event_id,
                    "event_type": item.event_type,
                    "stream": WORK_STREAM,
                    "envelope": envelope.to_json(),
                    "created_at": now,
                }
            )
        self.session.execute(insert(kit.outbox), rows)
        self.pending_events = [*self.pending_events, *work]

    def _open(self, session: Session) -> None:
        self.parties = SqlParties(session)
        self.subscriptions = SqlSubscriptions(session)
        self.usage = SqlUsage(session)
        self.pending = SqlPendingItems(session)
        self.invoices = SqlInvoices(session)
        self.credit = SqlAccountCredit(session)
        self.numbers = SqlNumbers(session)
        self.credit_notes = SqlCreditNotes(session)
        self.disputes = SqlDisputes(session)
        self.runs = SqlBillRuns(session)
        self.batch = SqlBatch(session)
        self.notifications = SqlInvoiceNotifications(session)
