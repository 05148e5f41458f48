"""What notifications announces on ``reckon:events:notifications`` (through its outbox)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.events import DomainEvent


@dataclass(frozen=True)
class MessageStatusChanged(DomainEvent):
    """A message about an invoice was queued, sent, delivered, failed or bounced.

    Published for messages that name an invoice (``invoice_id``), so invoicing can show
    an invoice's notifications without asking notifications at read time (ADR 0063).
    The recipient is masked: the address itself stays in notifications.
    """

    event_type = "MessageStatusChanged"
    aggregate_field = "message_id"

    message_id: str
    invoice_id: str
    customer_id: str
    channel: str  # EMAIL, SMS, WEBHOOK
    recipient_masked: str
    template: str
    source_event_type: str  # the event the message was made from, e.g. InvoiceIssued
    status: str  # QUEUED, SENT, DELIVERED, FAILED, BOUNCED
    attempts: int
    last_error: str
    created_at: datetime
    status_time: datetime
