"""The notifications service's tables and the imperative mapping of the domain onto them.

- ``messages``: the send queue and the record of every message; the unique key
  ``(event_id, channel, recipient)`` is what makes a twice-delivered event send once.
- ``sms_refs``: the SMSC's id of each SMS part, to match delivery receipts.
- ``webhook_attempts``: the delivery log of each endpoint (every attempt, its code).
- ``contacts``, ``account_links``: what accounts' events say about customers.
- ``preferences``: per customer and channel; ``webhook_endpoints``.
Enums are stored as text; instants are ``UtcDateTime``.
"""

from __future__ import annotations

import threading

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Enum,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import registry

from services.common.db import add_kit_tables
from services.common.sqltypes import UtcDateTime
from services.notifications.domain.model import (
    AccountLink,
    Category,
    Channel,
    Contact,
    Message,
    MessageStatus,
    Preference,
    WebhookEndpoint,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)
kit = add_kit_tables(metadata)
mapper_registry = registry(metadata=metadata)

_ID = 64


def _enum(enum_class: type[Channel] | type[MessageStatus] | type[Category]) -> Enum:
    return Enum(enum_class, native_enum=False, create_constraint=False, length=16)


messages = Table(
    "messages",
    metadata,
    Column("message_id", String(_ID), primary_key=True),
    Column("event_id", String(_ID), nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("channel", _enum(Channel), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("customer_id", String(_ID), nullable=False),
    Column("invoice_id", String(_ID), nullable=False),
    Column("template", String(128), nullable=False),
    Column("language", String(8), nullable=False),
    Column("category", _enum(Category), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", _enum(MessageStatus), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("provider_ref", Text, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("response_code", Integer, nullable=False),
    Column("trace_context", JSON, nullable=False),
    Column("status_version", Integer, nullable=False, server_default="1"),
    UniqueConstraint("event_id", "channel", "recipient"),
)
# The dispatcher's query: queued messages whose attempt is due, oldest first.
Index("ix_messages_status_next_attempt_at", messages.c.status, messages.c.next_attempt_at)
Index("ix_messages_customer_id_message_id", messages.c.customer_id, messages.c.message_id)
Index("ix_messages_invoice_id_message_id", messages.c.invoice_id, messages.c.message_id)
# An endpoint's messages (webhooks: recipient is the endpoint id) in a time range.
Index("ix_messages_recipient_created_at", messages.c.recipient, messages.c.created_at)

sms_refs = Table(
    "sms_refs",
    metadata,
    Column("provider_id", String(128), primary_key=True),
    Column("message_id", String(_ID), nullable=False),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("attempt_id", String(_ID), primary_key=True),
    Column("endpoint_id", String(_ID), nullable=False),
    Column("message_id", String(_ID), nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("response_code", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("duration_ms", Integer, nullable=False),
)
Index(
    "ix_webhook_attempts_endpoint_id_attempt_id",
    webhook_attempts.c.endpoint_id,
    webhook_attempts.c.attempt_id,
)

contacts = Table(
    "contacts",
    metadata,
    Column("customer_id", String(_ID), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("phone_number", String(32), nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("group_id", String(_ID), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
)

account_links = Table(
    "account_links",
    metadata,
    Column("account_id", String(_ID), primary_key=True),
    Column("customer_id", String(_ID), nullable=False),
    Column("time_zone", String(64), nullable=False),
)

# Invoice numbers from invoicing's events: confirmations name the invoice a payment paid.
invoice_refs = Table(
    "invoice_refs",
    metadata,
    Column("invoice_id", String(_ID), primary_key=True),
    Column("number", String(64), nullable=False),
)

preferences = Table(
    "preferences",
    metadata,
    Column("customer_id", String(_ID), primary_key=True),
    Column("channel", _enum(Channel), primary_key=True),
    Column("opted_in", Boolean, nullable=False),
    Column("opted_out", Boolean, nullable=False),
    Column("marketing_opted_out", Boolean, nullable=False),
    Column("language_code", String(35), nullable=False),
    Column("quiet_start", Time, nullable=True),
    Column("quiet_end", Time, nullable=True),
    Column("wants_einvoice", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("endpoint_id", String(_ID), primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("owner_email", String(320), nullable=False),
    Column("description", String(500), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("previous_secret", String(128), nullable=False),
    Column("previous_secret_until", UtcDateTime, nullable=True),
    Column("failing_since", UtcDateTime, nullable=True),
    Column("disabled_reason", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
)

_started = False
_lock = threading.Lock()


def start_mappers() -> None:
    global _started
    with _lock:
        if _started:
            return
        mapper_registry.map_imperatively(Message, messages)
        mapper_registry.map_imperatively(Contact, contacts)
        mapper_registry.map_imperatively(AccountLink, account_links)
        mapper_registry.map_imperatively(Preference, preferences)
        mapper_registry.map_imperatively(
            WebhookEndpoint, webhook_endpoints, version_id_col=webhook_endpoints.c.version
        )
        _started = True
