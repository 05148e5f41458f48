"""Events charging publishes on ``reckon:events:charging`` (through the outbox).

Notifications and dunning act on them (CHG-10). Amounts are ``Money`` (exact
strings on the wire); instants are ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from services.common.events import DomainEvent
from services.common.money import Money


@dataclass(frozen=True)
class BalanceLow(DomainEvent):
    """The money balance fell below the account's low-balance threshold."""

    event_type: ClassVar[str] = "BalanceLow"
    aggregate_field: ClassVar[str] = "account_id"

    account_id: str
    balance: Money
    threshold: Money


@dataclass(frozen=True)
class CreditLimitReached(DomainEvent):
    """Postpaid or hybrid usage reached ``percent`` (80 or 100) of the credit limit."""

    event_type: ClassVar[str] = "CreditLimitReached"
    aggregate_field: ClassVar[str] = "account_id"

    account_id: str
    percent: int
    used: Money
    credit_limit: Money


@dataclass(frozen=True)
class BucketExpiring(DomainEvent):
    """A bucket with something left in it ends soon."""

    event_type: ClassVar[str] = "BucketExpiring"
    aggregate_field: ClassVar[str] = "account_id"

    account_id: str
    bucket_id: str
    unit: str
    remaining: int
    valid_until: datetime
    label: str = ""


@dataclass(frozen=True)
class BucketExpired(DomainEvent):
    """A bucket reached the end of its validity; what was left is no longer usable."""

    event_type: ClassVar[str] = "BucketExpired"
    aggregate_field: ClassVar[str] = "account_id"

    account_id: str
    bucket_id: str
    unit: str
    remaining: int
    valid_until: datetime
    label: str = ""
