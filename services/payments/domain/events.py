"""Events the payments service publishes (stream ``reckon:events:payments``).

Notifications sends confirmations from ``PaymentSucceeded``; dunning reads the
decline reason of ``PaymentFailed`` and reopened invoices from
``PaymentRefunded`` and ``ChargebackReceived``. No card number is ever in one:
only the method id, brand and last four.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.common.events import DomainEvent
from services.common.money import Money


@dataclass(frozen=True)
class PaymentSucceeded(DomainEvent):
    event_type = "PaymentSucceeded"
    aggregate_field = "payment_id"

    payment_id: str
    account_id: str
    customer_id: str
    amount: Money
    channel: str
    purpose: str
    provider_reference: str
    invoice_ids: list[str] = field(default_factory=list)
    settled_at: datetime | None = None


@dataclass(frozen=True)
class PaymentFailed(DomainEvent):
    event_type = "PaymentFailed"
    aggregate_field = "payment_id"

    payment_id: str
    account_id: str
    customer_id: str
    amount: Money
    channel: str
    decline_code: str
    hard_decline: bool
    attempt: int
    # When the collection is tried again; None: no more tries (dunning takes over).
    next_retry_at: datetime | None = None
    invoice_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PaymentRefunded(DomainEvent):
    event_type = "PaymentRefunded"
    aggregate_field = "payment_id"

    payment_id: str  # the refund transaction
    original_payment_id: str
    account_id: str
    customer_id: str
    amount: Money
    invoice_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChargebackReceived(DomainEvent):
    event_type = "ChargebackReceived"
    aggregate_field = "payment_id"

    payment_id: str  # the chargeback transaction
    original_payment_id: str
    account_id: str
    customer_id: str
    amount: Money
    reason: str
    invoice_ids: list[str] = field(default_factory=list)
