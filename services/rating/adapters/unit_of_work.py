"""The rating service's SQL unit of work: the kit's transactional outbox plus its repositories."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.common.sql_uow import SqlUnitOfWork
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
    def _open(self, session: Session) -> None:
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
