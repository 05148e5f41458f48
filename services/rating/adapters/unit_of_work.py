"""The rating service's SQL unit of work: the kit's transactional outbox plus its repositories."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.propagate import inject
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from services.common.events import EventEnvelope, stream_for
from services.common.ids import new_id
from services.common.sql_uow import SqlUnitOfWork
from services.common.telemetry import tracer
from services.rating.adapters.orm import held_events
from services.rating.adapters.repositories import (
    SqlAccountRepository,
    SqlCatalogRepository,
    SqlCounterRepository,
    SqlImportRepository,
    SqlRejectRepository,
    SqlRerateRepository,
    SqlUsageRepository,
)
from services.rating.service_layer.unit_of_work import RatingUnitOfWork


class SqlRatingUnitOfWork(SqlUnitOfWork, RatingUnitOfWork):
    _released = False

    def _open(self, session: Session) -> None:
        self._released = False
        self.catalog = SqlCatalogRepository(session)
        self.accounts = SqlAccountRepository(session)
        self.imports = SqlImportRepository(session)
        self.usage = SqlUsageRepository(session)
        self.rejects = SqlRejectRepository(session)
        self.rerates = SqlRerateRepository(session)
        self.counters = SqlCounterRepository(session)

    def rollback(self) -> None:
        # A rollback expires every loaded object; detaching them first keeps what a
        # handler read usable (as plain data) after its unit of work has ended.
        self.session.expunge_all()
        self.session.rollback()

    def _commit(self) -> None:
        if self.held_events:
            self._write_held()
        released, self._released = self._released, False
        super()._commit()
        if released and self._after_commit is not None:
            self._after_commit()  # wake the relay: released events are in the outbox

    def _write_held(self) -> None:
        """Envelopes as the outbox would store them (trace context included), kept in
        ``held_events`` until their key is released."""
        now = self._clock.now()
        stream = stream_for(self._source)
        rows = []
        for key, event in self.held_events:
            with tracer().start_as_current_span(
                f"reckon.event.publish {event.event_type}",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.operation": "publish",
                    "messaging.destination.name": stream,
                    "reckon.event.type": event.event_type,
                    "reckon.event.held": True,
                },
            ):
                carrier: dict[str, str] = {}
                inject(carrier)
                envelope = EventEnvelope(
                    event_id=new_id("evt"),
                    event_type=event.event_type,
                    source=self._source,
                    aggregate_id=event.aggregate_id,
                    occurred_at=now,
                    payload=event.payload(),
                    trace_context=carrier,
                )
                rows.append(
                    {
                        "hold_key": key,
                        "event_id": envelope.event_id,
                        "event_type": event.event_type,
                        "stream": stream,
                        "envelope": envelope.to_json(),
                        "created_at": now,
                    }
                )
        self.session.execute(insert(held_events), rows)

    def release_held(self, key: str) -> int:
        count = self.held_count(key)
        if not count:
            return 0
        # One INSERT ... SELECT: the database moves them, however many (constant memory).
        outbox = self._kit.outbox
        columns = ("event_id", "event_type", "stream", "envelope", "created_at")
        chosen = (
            select(*(held_events.c[name] for name in columns))
            .where(held_events.c.hold_key == key)
            .order_by(held_events.c.id)
        )
        self.session.execute(
            insert(outbox).from_select([outbox.c[name] for name in columns], chosen)
        )
        self.session.execute(delete(held_events).where(held_events.c.hold_key == key))
        self._released = True
        return count

    def held_count(self, key: str) -> int:
        return int(
            self.session.execute(
                select(func.count()).where(held_events.c.hold_key == key)
            ).scalar_one()
        )
