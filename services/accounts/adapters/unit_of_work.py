"""The SQL unit of work of the accounts service: the kit's outbox-writing unit plus
this service's repositories."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.accounts.adapters.orm import kit, start_mappers
from services.accounts.adapters.repositories import (
    SqlAccountRepository,
    SqlCustomerRepository,
    SqlSubscriptionRepository,
)
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.clock import Clock
from services.common.sql_uow import SqlUnitOfWork

SOURCE = "accounts"  # events go to the stream reckon:events:accounts


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for the accounts units of work.

    ``expire_on_commit=False``: handlers return the aggregates they committed and
    the servicer reads them after the session closed, in another thread.
    ``autoflush=False``: changes are flushed once, at commit, where the kit turns a
    version conflict into ABORTED; handlers query before they change anything.
    """
    start_mappers()
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


class SqlAccountsUnitOfWork(SqlUnitOfWork, AccountsUnitOfWork):
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
        self.customers = SqlCustomerRepository(session)
        self.accounts = SqlAccountRepository(session)
        self.subscriptions = SqlSubscriptionRepository(session)
