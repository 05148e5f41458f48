"""The SQL unit of work of the notifications service."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.sql_uow import SqlUnitOfWork
from services.notifications.adapters.orm import kit, start_mappers
from services.notifications.adapters.repositories import (
    SqlContactRepository,
    SqlEndpointRepository,
    SqlMessageRepository,
    SqlPreferenceRepository,
)
from services.notifications.service_layer.unit_of_work import NotificationsUnitOfWork

SOURCE = "notifications"  # its events (MessageStatusChanged) go to reckon:events:notifications


def session_factory(engine: Engine) -> sessionmaker[Session]:
    start_mappers()
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


class SqlNotificationsUnitOfWork(SqlUnitOfWork, NotificationsUnitOfWork):
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
        self.messages = SqlMessageRepository(session)
        self.contacts = SqlContactRepository(session)
        self.preferences = SqlPreferenceRepository(session)
        self.endpoints = SqlEndpointRepository(session)
