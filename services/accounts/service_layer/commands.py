"""Commands (requests to change something) and queries of the accounts service.

They carry validated values only: entrypoints check shapes and formats and
build these; handlers enforce the business rules. Mutating commands carry the
caller's ``request_id`` and the request's ``fingerprint`` (AIP-155); both empty
when the caller sent no ``request_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from services.accounts.domain.billing_cycle import BillingPeriod
from services.accounts.domain.model import (
    AccountRevision,
    AccountState,
    ChangeTiming,
    CustomerRevision,
    PaymentMode,
    Subscription,
    SubscriptionState,
)
from services.common.money import Money

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Command:
    request_id: str = ""
    fingerprint: str = ""  # SHA-256 of the request without its request_id


# -- customers ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CreateCustomer(Command):
    display_name: str
    email: str
    phone_number: str = ""
    language_code: str = ""
    reseller_id: str = ""
    group_id: str = ""
    referred_by: str = ""  # a referral code of another customer
    external_ref: str | None = None  # the operator's own reference, unique
    vat_id: str = ""  # VAT identifier for invoices, or ""


@dataclass(frozen=True, kw_only=True)
class UpdateCustomer(Command):
    customer_id: str
    revision: CustomerRevision


@dataclass(frozen=True)
class RecordReferral:
    """Credit a referrer for a customer created with their code (from CustomerCreated)."""

    event_id: str
    referrer_customer_id: str
    referred_customer_id: str


# -- accounts -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CreateAccount(Command):
    customer_id: str
    currency_code: str
    time_zone: str
    bill_cycle_day: int
    payment_mode: PaymentMode
    display_name: str = ""
    tax_region: str = ""
    payment_terms_days: int = 0
    credit_limit: Money | None = None
    parent_account_id: str | None = None
    external_ref: str | None = None  # the operator's own reference, unique


@dataclass(frozen=True, kw_only=True)
class UpdateAccount(Command):
    account_id: str
    revision: AccountRevision


@dataclass(frozen=True, kw_only=True)
class ChangeAccountState(Command):
    account_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class SuspendAccount(ChangeAccountState):
    pass


@dataclass(frozen=True, kw_only=True)
class BarAccount(ChangeAccountState):
    pass


@dataclass(frozen=True, kw_only=True)
class RestoreAccount(ChangeAccountState):
    pass


@dataclass(frozen=True, kw_only=True)
class CloseAccount(ChangeAccountState):
    pass


# -- subscriptions --------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CreateSubscription(Command):
    account_id: str
    plan_code: str
    start_time: datetime | None = None  # default now; may be in the past
    service_ids: tuple[str, ...] = ()  # normalised keys (msisdn:+31..., sip:..., ...)


@dataclass(frozen=True, kw_only=True)
class ChangePlan(Command):
    subscription_id: str
    plan_code: str
    timing: ChangeTiming


@dataclass(frozen=True, kw_only=True)
class AddAddOn(Command):
    subscription_id: str
    add_on_code: str
    quantity: int = 1


@dataclass(frozen=True, kw_only=True)
class RemoveAddOn(Command):
    subscription_id: str
    add_on_code: str


@dataclass(frozen=True, kw_only=True)
class CancelSubscription(Command):
    subscription_id: str
    timing: ChangeTiming


# -- queries --------------------------------------------------------------------------------
@dataclass(frozen=True)
class GetCustomer:
    customer_id: str


@dataclass(frozen=True, kw_only=True)
class ListCustomers:
    limit: int
    after: str = ""
    reseller_id: str = ""
    group_id: str = ""


@dataclass(frozen=True)
class GetAccount:
    account_id: str


@dataclass(frozen=True, kw_only=True)
class ListAccounts:
    limit: int
    after: str = ""
    customer_id: str = ""
    state: AccountState | None = None
    reseller_id: str = ""
    group_id: str = ""


@dataclass(frozen=True, kw_only=True)
class ListAccountStateHistory:
    account_id: str
    limit: int
    after_sequence: int = 0  # the sequence number of the last entry already seen


@dataclass(frozen=True)
class GetSubscription:
    subscription_id: str


@dataclass(frozen=True, kw_only=True)
class ListSubscriptions:
    limit: int
    after: str = ""
    account_id: str = ""
    state: SubscriptionState | None = None


# -- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # Key of the last item when more may follow, else "".
    next_after: str = ""


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription with its current bill cycle (derived from the account)."""

    subscription: Subscription
    current_period: BillingPeriod | None
