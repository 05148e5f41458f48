"""SQLAlchemy implementation of the unit of work, with the transactional outbox.

On ``commit`` every queued event becomes an ``outbox`` row in the same
transaction as the business change: either both are durable or neither is.
Each event gets a ``reckon.event.publish`` span whose context is stored in the
envelope, so the relay and every consumer continue the request's trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Self

from opentelemetry import trace
from opentelemetry.propagate import inject
from sqlalchemy import Insert, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from services.common.clock import Clock
from services.common.db import KitTables
from services.common.errors import Aborted
from services.common.events import EventEnvelope, stream_for
from services.common.ids import new_id
from services.common.telemetry import tracer
from services.common.unit_of_work import RememberedRequest, UnitOfWork


class SqlUnitOfWork(UnitOfWork):
    """Base for each service's SQL unit of work; subclasses add repositories in ``_open``."""

    session: Session

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        kit: KitTables,
        *,
        source: str,
        clock: Clock,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._session_factory = session_factory
        self._kit = kit
        self._source = source
        self._clock = clock
        self._after_commit = after_commit

    def __enter__(self) -> Self:
        self.session = self._session_factory()
        self._open(self.session)
        return super().__enter__()

    def __exit__(self, *args: object) -> None:
        super().__exit__(*args)  # type: ignore[arg-type]
        self.session.close()

    def _open(self, session: Session) -> None:
        """Attach repositories to the new session."""

    def _commit(self) -> None:
        wrote_events = bool(self.pending_events)
        if wrote_events:
            self._write_outbox()
        try:
            self.session.commit()
        except (IntegrityError, StaleDataError) as exc:
            self.session.rollback()
            # A unique key taken by a concurrent transaction, or a row whose version
            # (``version_id_col``) moved on since it was read: the caller may retry.
            raise Aborted("a concurrent change conflicted with this one; retry") from exc
        if wrote_events and self._after_commit is not None:
            self._after_commit()

    def rollback(self) -> None:
        # End the transaction without expiring what this unit loaded: Session.rollback()
        # expires every object, yet servicers read a handler's result after the unit
        # ended (a read-only unit is "rolled back" too). close() discards the
        # transaction all the same (the pool rolls the connection back) and keeps the
        # loaded state of the now-detached objects.
        self.session.close()

    def _write_outbox(self) -> None:
        now = self._clock.now()
        rows = []
        for event in self.pending_events:
            with tracer().start_as_current_span(
                f"reckon.event.publish {event.event_type}",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.operation": "publish",
                    "messaging.destination.name": stream_for(self._source),
                    "reckon.event.type": event.event_type,
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
                        "event_id": envelope.event_id,
                        "event_type": event.event_type,
                        "stream": stream_for(self._source),
                        "envelope": envelope.to_json(),
                        "created_at": now,
                    }
                )
        self._insert_outbox(rows)

    def _insert_outbox(self, rows: list[dict[str, Any]]) -> None:
        """Store the outbox rows in this transaction; a service that writes many events
        at once may store them faster (invoicing's bill runs: one ``COPY``)."""
        self.session.execute(insert(self._kit.outbox), rows)

    def find_request(self, scope: str, request_id: str) -> RememberedRequest | None:
        table = self._kit.idempotency_keys
        row = self.session.execute(
            select(table.c.fingerprint, table.c.resource_id).where(
                table.c.scope == scope, table.c.request_id == request_id
            )
        ).first()
        return RememberedRequest(row.fingerprint, row.resource_id) if row else None

    def remember_request(
        self, scope: str, request_id: str, fingerprint: str, resource_id: str
    ) -> None:
        if not request_id:
            return
        self._insert_or_abort(
            insert(self._kit.idempotency_keys).values(
                scope=scope,
                request_id=request_id,
                fingerprint=fingerprint,
                resource_id=resource_id,
                created_at=self._clock.now(),
            )
        )

    def mark_processed(self, consumer: str, event_id: str) -> bool:
        table = self._kit.processed_events
        seen = self.session.execute(
            select(table.c.event_id).where(
                table.c.consumer == consumer, table.c.event_id == event_id
            )
        ).first()
        if seen:
            return False
        # A concurrent duplicate fails on the primary key (ABORTED) and is redelivered.
        self._insert_or_abort(
            insert(table).values(
                consumer=consumer, event_id=event_id, processed_at=self._clock.now()
            )
        )
        return True

    def mark_processed_many(self, consumer: str, event_ids: Sequence[str]) -> list[str]:
        wanted = list(dict.fromkeys(event_ids))
        if not wanted:
            return []
        table = self._kit.processed_events
        seen = set(
            self.session.scalars(
                select(table.c.event_id).where(
                    table.c.consumer == consumer, table.c.event_id.in_(wanted)
                )
            )
        )
        fresh = [i for i in wanted if i not in seen]
        if fresh:
            now = self._clock.now()
            rows = [{"consumer": consumer, "event_id": i, "processed_at": now} for i in fresh]
            try:  # one multi-row INSERT; a concurrent duplicate of any of them: ABORTED
                self.session.execute(insert(table), rows)
            except IntegrityError as exc:
                raise Aborted("a concurrent consumer took the same events; retry") from exc
        return fresh

    def _insert_or_abort(self, statement: Insert) -> None:
        # Core inserts run at once, not at commit: a key taken by a concurrent
        # transaction fails here (after it committed), and must be ABORTED too.
        try:
            self.session.execute(statement)
        except IntegrityError as exc:
            raise Aborted("a concurrent request took the same key; retry") from exc
