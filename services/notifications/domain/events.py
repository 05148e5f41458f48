"""The events notifications publishes (on ``reckon:events:notifications``).

``MessageStatusChanged`` tells other services (invoicing shows an invoice's
notifications) where an e-mail or SMS stands, each time its status is set:
queued, sent, delivered, failed, bounced, queued again. ``status_version`` grows
by one per change of a message, so a consumer keeps the highest one it saw even
when a redelivery brings an older event later. The recipient is masked
(``a***@example.com``, ``+316******78``): addresses stay in notifications.
Webhook deliveries have their own log (``ListWebhookAttempts``) and are not
announced: one event per delivery of every business event would double the bus
for no reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.events import DomainEvent
from services.notifications.domain.addresses import masked
from services.notifications.domain.model import Channel, Message


@dataclass(frozen=True)
class MessageStatusChanged(DomainEvent):
    event_type = "MessageStatusChanged"
    aggregate_field = "message_id"

    message_id: str
    source_event_id: str  # the event the message was made from
    source_event_type: str
    channel: str  # EMAIL or SMS
    recipient: str  # masked
    customer_id: str
    invoice_id: str  # "" when the message concerns no invoice
    template: str
    status: str  # QUEUED, SENT, DELIVERED, FAILED, BOUNCED
    attempts: int
    last_error: str
    status_version: int
    created_at: datetime  # when the message was made
    changed_at: datetime


def status_changed(message: Message, now: datetime) -> MessageStatusChanged | None:
    """The event announcing the message's current status; None for webhook deliveries."""
    if message.channel is Channel.WEBHOOK:
        return None
    return MessageStatusChanged(
        message_id=message.message_id,
        source_event_id=message.event_id,
        source_event_type=message.event_type,
        channel=message.channel.value,
        recipient=masked(message.channel.value, message.recipient),
        customer_id=message.customer_id,
        invoice_id=message.invoice_id,
        template=message.template,
        status=message.status.value,
        attempts=message.attempts,
        last_error=message.last_error,
        status_version=message.status_version,
        created_at=message.created_at,
        changed_at=now,
    )
