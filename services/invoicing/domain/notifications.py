"""The notifications of an invoice, as notifications announced them (ADR 0063).

Invoicing keeps its own copy, from notifications' ``MessageStatusChanged`` events, so an
invoice's details show its e-mails, SMS and webhooks without calling notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class InvoiceNotification:
    message_id: str
    invoice_id: str
    customer_id: str
    channel: str  # EMAIL, SMS, WEBHOOK
    recipient: str  # masked by notifications: a***@example.com, +316******78
    template: str
    source_event_type: str  # what the message was made from, e.g. InvoiceIssued
    status: str  # QUEUED, SENT, DELIVERED, FAILED, BOUNCED
    attempts: int
    last_error: str
    create_time: datetime
    status_time: datetime

    def is_newer_than(self, other: InvoiceNotification) -> bool:
        """Events may arrive out of order: the later status time wins (a tie: more
        attempts, then a final status over QUEUED)."""
        return (self.status_time, self.attempts, self.status != "QUEUED") >= (
            other.status_time,
            other.attempts,
            other.status != "QUEUED",
        )
