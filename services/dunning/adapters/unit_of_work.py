"""The SQL unit of work of the dunning service: the kit's outbox-writing unit plus this
service's repositories. Run work messages go to their own stream (``reckon:dunning:work``)
through the same outbox, like invoicing's bill-run work (ADR 0049).

A unit with many events (a work message of the daily run: a thousand accounts, two or
three events each) writes its outbox rows with one ``COPY`` on PostgreSQL under one
publish span for the batch, whose trace context every envelope carries (ADR 0070);
a unit with a few events (a projection update, an API call) gets the kit's span per
event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from opentelemetry import trace
from opentelemetry.propagate import inject
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.errors import Aborted
from services.common.events import DomainEvent, EventEnvelope, stream_for
from services.common.ids import new_id
from services.common.sql_uow import SqlUnitOfWork
from services.common.telemetry import tracer
from services.dunning.adapters.orm import kit, start_mappers
from services.dunning.adapters.repositories import (
    SqlAccounts,
    SqlInvoices,
    SqlPolicies,
    SqlReactions,
    SqlRuns,
    copy_rows,
)
from services.dunning.service_layer.runs import WORK_STREAM, DunningRunWork
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork

SOURCE = "dunning"  # events go to the stream reckon:events:dunning
# From this many events on, a unit writes its outbox as one batch (one span, COPY).
BATCH_EVENTS = 20


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """``expire_on_commit=False``: handlers return what they committed to the servicer;
    ``autoflush=False``: one flush at commit, where a version conflict becomes ABORTED."""
    start_mappers()
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


class SqlDunningUnitOfWork(SqlUnitOfWork, DunningUnitOfWork):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sessions, kit, source=SOURCE, clock=clock, after_commit=after_commit)
        self.clock = clock

    def _open(self, session: Session) -> None:
        self.accounts = SqlAccounts(session)
        self.invoices = SqlInvoices(session)
        self.policies = SqlPolicies(session)
        self.runs = SqlRuns(session)
        self._sql_reactions = SqlReactions(session)
        self.reactions = self._sql_reactions

    def _commit(self) -> None:
        try:
            self._sql_reactions.flush()
        except IntegrityError as exc:
            self.session.rollback()
            raise Aborted("a concurrent run or event stored the same reaction; retry") from exc
        super()._commit()

    def _write_outbox(self) -> None:
        if len(self.pending_events) < BATCH_EVENTS and not any(
            isinstance(e, DunningRunWork) for e in self.pending_events
        ):
            super()._write_outbox()
            return
        events = self.pending_events
        with tracer().start_as_current_span(
            "reckon.event.publish dunning batch",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "redis",
                "messaging.operation": "publish",
                "messaging.destination.name": stream_for(SOURCE),
                "messaging.batch.message_count": len(events),
            },
        ):
            carrier: dict[str, str] = {}
            inject(carrier)
            now = self.clock.now()
            copy_rows(self.session, kit.outbox, [self._row(e, now, carrier) for e in events])

    @staticmethod
    def _row(event: DomainEvent, now: datetime, carrier: dict[str, str]) -> dict[str, object]:
        work = isinstance(event, DunningRunWork)
        envelope = EventEnvelope(
            event_id=new_id("wrk" if work else "evt"),
            event_type=event.event_type,
            source=SOURCE,
            aggregate_id=event.aggregate_id,
            occurred_at=now,
            payload=event.payload(),
            trace_context=carrier,
        )
        return {
            "event_id": envelope.event_id,
            "event_type": event.event_type,
            "stream": WORK_STREAM if work else stream_for(SOURCE),
            "envelope": envelope.to_json(),
            "created_at": now,
        }
