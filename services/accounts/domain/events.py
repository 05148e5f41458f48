"""Facts the accounts service publishes on ``reckon:events:accounts``.

Payloads are the dataclass fields (money as ``{"amount", "currency"}`` strings,
instants as ISO 8601 UTC, enums by value). They carry what consumers need
without calling back: charging and rating keep a view of accounts (currency,
time zone, tax region, group, state), invoicing prorates subscription changes
(``effective_time`` and the bill cycle containing it), dunning and
notifications react to state changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.common.events import DomainEvent
from services.common.money import Money


@dataclass(frozen=True)
class CustomerCreated(DomainEvent):
    event_type = "CustomerCreated"
    aggregate_field = "customer_id"

    customer_id: str
    display_name: str
    email: str
    language_code: str
    reseller_id: str
    group_id: str
    referral_code: str
    # The referral code quoted on sign-up and the customer it belongs to (or "").
    referred_by: str
    referrer_customer_id: str
    create_time: datetime
    external_ref: str = ""  # the operator's reference, "" when none
    # Added for notifications (SMS): the customer's E.164 number, or "".
    phone_number: str = ""
    # Added for invoicing: the customer's VAT identifier (reverse charge, intra-community
    # supply), or "".
    vat_id: str = ""


@dataclass(frozen=True)
class CustomerUpdated(DomainEvent):
    event_type = "CustomerUpdated"
    aggregate_field = "customer_id"

    customer_id: str
    changed_fields: tuple[str, ...]
    display_name: str
    email: str
    phone_number: str
    language_code: str
    reseller_id: str
    group_id: str
    update_time: datetime
    vat_id: str = ""  # added for invoicing, as in CustomerCreated


@dataclass(frozen=True)
class _AccountFacts(DomainEvent):
    """What consumers keep about an account, flat so they can read it without nesting."""

    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    # The customer's reseller and group at the time of the event (filters for bill runs).
    reseller_id: str
    group_id: str
    currency_code: str
    time_zone: str
    bill_cycle_day: int
    tax_region: str
    payment_terms_days: int
    payment_mode: str
    credit_limit: Money | None
    parent_account_id: str
    state: str


@dataclass(frozen=True)
class AccountCreated(_AccountFacts):
    event_type = "AccountCreated"

    create_time: datetime
    # The operator's references of the account and of its customer ("" when none):
    # rating finds accounts and price packages by them (issue 9 item 12).
    external_ref: str = ""
    customer_external_ref: str = ""


@dataclass(frozen=True)
class AccountUpdated(_AccountFacts):
    event_type = "AccountUpdated"

    changed_fields: tuple[str, ...]
    update_time: datetime
    external_ref: str = ""
    customer_external_ref: str = ""


@dataclass(frozen=True)
class AccountStateChanged(DomainEvent):
    event_type = "AccountStateChanged"
    aggregate_field = "account_id"

    account_id: str
    customer_id: str
    from_state: str
    to_state: str
    reason: str
    change_time: datetime


class SubscriptionChangeKind(StrEnum):
    CREATED = "CREATED"
    PLAN_CHANGED = "PLAN_CHANGED"
    PLAN_CHANGE_SCHEDULED = "PLAN_CHANGE_SCHEDULED"
    ADDON_ADDED = "ADDON_ADDED"
    ADDON_REMOVED = "ADDON_REMOVED"
    CANCELLED = "CANCELLED"
    CANCEL_SCHEDULED = "CANCEL_SCHEDULED"


@dataclass(frozen=True)
class SubscriptionChanged(DomainEvent):
    """One change of a subscription, with what invoicing needs to prorate it.

    ``effective_time`` is when the change takes (or took) effect: the moment of
    the call for immediate changes, the cycle boundary for scheduled ones (also
    when the scheduler applies them late). ``period_start``/``period_end`` are the
    bill cycle containing ``effective_time``, so the fraction of the cycle before
    and after the change is ``(effective - start) / (end - start)`` and its rest.
    """

    event_type = "SubscriptionChanged"
    aggregate_field = "subscription_id"

    subscription_id: str
    account_id: str
    customer_id: str
    kind: SubscriptionChangeKind
    # The plan in force after the event (before it, for *_SCHEDULED kinds).
    plan_code: str
    # Plan changes: from and to (equal to plan_code for other kinds).
    old_plan_code: str
    new_plan_code: str
    # ADDON_* kinds: which add-on and how many units were added or removed.
    add_on_code: str
    add_on_quantity: int
    effective_time: datetime
    period_start: datetime
    period_end: datetime
    currency_code: str
    time_zone: str
    bill_cycle_day: int
    # Why (e.g. "account closed: <reason>"); empty when the caller gave none.
    reason: str
    # The subscription's service identifier keys (msisdn:+31..., sip:..., pin:..., code:...).
    service_ids: tuple[str, ...] = ()
