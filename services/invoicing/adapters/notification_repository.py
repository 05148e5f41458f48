"""The invoices' notifications, a projection of notifications' events (ADR 0063)."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from services.invoicing.adapters.orm import invoice_notifications
from services.invoicing.domain.notifications import InvoiceNotification


class SqlInvoiceNotifications:
    def __init__(self, session: Session) -> None:
        self._s = session

    def get(self, message_id: str) -> InvoiceNotification | None:
        row = self._s.execute(
            select(invoice_notifications).where(invoice_notifications.c.message_id == message_id)
        ).first()
        return InvoiceNotification(**row._mapping) if row else None

    def put(self, notification: InvoiceNotification, *, exists: bool) -> None:
        values = vars(notification).copy()
        if exists:
            message_id = values.pop("message_id")
            self._s.execute(
                update(invoice_notifications)
                .where(invoice_notifications.c.message_id == message_id)
                .values(**values)
            )
        else:
            self._s.execute(insert(invoice_notifications).values(**values))

    def of_invoice(self, invoice_id: str) -> list[InvoiceNotification]:
        rows = self._s.execute(
            select(invoice_notifications)
            .where(invoice_notifications.c.invoice_id == invoice_id)
            .order_by(invoice_notifications.c.create_time, invoice_notifications.c.message_id)
        )
        return [InvoiceNotification(**row._mapping) for row in rows]
