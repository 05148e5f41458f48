"""The SQL unit of work of the payments service: the kit's outbox unit plus repositories."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.sql_uow import SqlUnitOfWork
from services.payments.adapters.collection_rows import SqlCollectionRows
from services.payments.adapters.orm import kit, start_mappers
from services.payments.adapters.repositories import (
    SqlMethodRepository,
    SqlPaymentRepository,
    SqlSettingsRepository,
    SqlStatementRepository,
)
from services.payments.service_layer.ports import PaymentsUnitOfWork

SOURCE = "payments"  # events go to the stream reckon:events:payments


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (servicers read them later)."""
    start_mappers()
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


class SqlPaymentsUnitOfWork(SqlUnitOfWork, PaymentsUnitOfWork):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sessions, kit, source=SOURCE, clock=clock, after_commit=after_commit)

    def _open(self, session: Session) -> None:
        self.methods = SqlMethodRepository(session)
        self.settings = SqlSettingsRepository(session)
        self.payments = SqlPaymentRepository(session)
        self.statements = SqlStatementRepository(session)
        self.collections = SqlCollectionRows(session, kit.idempotency_keys, self._clock)
