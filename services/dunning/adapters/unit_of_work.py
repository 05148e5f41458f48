"""The SQL unit of work of the dunning service: the kit's outbox-writing unit plus this
service's repositories. Run work messages go to their own stream (``reckon:dunning:work``)
through the same outbox, like invoicing's bill-run work (ADR 0049)."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.propagate import inject
from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.errors import Aborted
from services.common.events import EventEnvelope
from services.common.ids import new_id
from services.common.sql_uow import SqlUnitOfWork
from services.dunning.adapters.orm import kit, start_mappers
from services.dunning.adapters.repositories import (
    SqlAccounts,
    SqlInvoices,
    SqlPolicies,
    SqlReactions,
    SqlRuns,
)
from services.dunning.service_layer.runs import WORK_STREAM, DunningRunWork
from services.dunning.service_layer.unit_of_work import DunningUnitOfWork

SOURCE = "dunning"  # events go to the stream reckon:events:dunning


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
        work = [e for e in self.pending_events if isinstance(e, DunningRunWork)]
        if not work:
            super()._write_outbox()
            return
        self.pending_events = [e for e in self.pending_events if not isinstance(e, DunningRunWork)]
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
