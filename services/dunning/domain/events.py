"""Facts the dunning service publishes on ``reckon:events:dunning``.

Notifications turns ``DunningMessageDue`` into e-mail and SMS by its rules
(``event: DunningMessageDue``, ``when: {template: dunning_reminder}``); its
``message_key`` is unique per message, so a customer gets each message once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.common.events import DomainEvent
from services.common.money import Money


@dataclass(frozen=True)
class DunningLevelReached(DomainEvent):
    event_type = "DunningLevelReached"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str
    level: int
    level_name: str
    previous_level: int
    amount_overdue: Money
    days_past_due: int
    policy_code: str
    policy_version: int


@dataclass(frozen=True)
class DunningMessageDue(DomainEvent):
    event_type = "DunningMessageDue"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str
    level: int
    level_name: str
    channel: str  # EMAIL or SMS
    template: str
    amount_overdue: Money
    days_past_due: int
    oldest_due_date: date | None
    message_key: str


@dataclass(frozen=True)
class AccountHandedToCollections(DomainEvent):
    event_type = "AccountHandedToCollections"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str
    amount_overdue: Money
    days_past_due: int
    invoice_ids: tuple[str, ...]


@dataclass(frozen=True)
class DunningPaused(DomainEvent):
    event_type = "DunningPaused"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str
    amount_disputed: Money


@dataclass(frozen=True)
class DunningResumed(DomainEvent):
    event_type = "DunningResumed"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str


@dataclass(frozen=True)
class DunningEnded(DomainEvent):
    event_type = "DunningEnded"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    episode_id: str
    level: int
    reason: str  # PAID, ACCOUNT_CLOSED
    service_restored: bool
