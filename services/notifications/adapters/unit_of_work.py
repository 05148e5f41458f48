"""The SQL unit of work of the notifications service."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import instance_state

from services.common.clock import Clock
from services.common.sql_uow import SqlUnitOfWork
from services.notifications.adapters.orm import kit, start_mappers
from services.notifications.adapters.repositories import (
    SqlContactRepository,
    SqlEndpointRepository,
    SqlMessageRepository,
    SqlPreferenceRepository,
)
from services.notifications.domain.addresses import masked
from services.notifications.domain.events import MessageStatusChanged
from services.notifications.domain.model import Message
from services.notifications.service_layer.unit_of_work import NotificationsUnitOfWork

SOURCE = "notifications"  # its own events go to reckon:events:notifications


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

    def _commit(self) -> None:
        self._announce_status_changes()
        super()._commit()

    def _announce_status_changes(self) -> None:
        """A ``MessageStatusChanged`` for every message about an invoice that this
        transaction created or whose status it changed, committed with it (ADR 0063).

        Here rather than at each of the places that move a message (planning, the
        dispatcher, receipts, retries, replays), so none can be forgotten.
        """
        for obj in (*self.session.new, *self.session.dirty):
            if not isinstance(obj, Message) or not obj.invoice_id:
                continue
            state = instance_state(obj)
            if not state.pending and not state.attrs.status.history.has_changes():
                continue
            channel = str(obj.channel)
            self.publish(
                MessageStatusChanged(
                    message_id=obj.message_id,
                    invoice_id=obj.invoice_id,
                    customer_id=obj.customer_id,
                    channel=channel,
                    recipient_masked=masked(channel, obj.recipient),
                    template=obj.template,
                    source_event_type=obj.event_type,
                    status=str(obj.status),
                    attempts=obj.attempts,
                    last_error=obj.last_error,
                    created_at=obj.created_at,
                    status_time=obj.updated_at or obj.created_at,
                )
            )
