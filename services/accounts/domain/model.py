"""The accounts domain model: customers, billing accounts and subscriptions.

Plain dataclasses whose methods enforce the rules and return the events that
describe what changed; the handlers persist them and publish the events. The
SQL adapter maps these classes imperatively, so nothing here knows about
storage. Entities compare by identity (``eq=False``): two objects are the same
customer only if they are the same object loaded in one unit of work.

Rules decided here (ACC-1, ACC-2):
- Credit limit: required for POSTPAID and HYBRID, in the account's currency and
  not negative; refused for PREPAID (a limit there would mean nothing).
- Parent account: an account of the *same customer* that is not CLOSED, and
  never the account itself or one of its descendants. Hierarchies model a
  customer's own structure (head office, departments); across customers they
  would leak one customer's billing into another's.
- Subscriptions grow (create, change plan, add add-ons) only on ACTIVE accounts.
  A SUSPENDED account may still shrink (remove add-ons, cancel): suspension is
  the temporary state dunning uses, and a customer in arrears should be able to
  cut costs but not take on more. BARRED and CLOSED accounts allow neither
  (``ACCOUNT_NOT_ACTIVE``); closing an account cancels its subscriptions itself.
- A cancelled subscription cannot change (``SUBSCRIPTION_CANCELLED``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, TypedDict

from services.accounts.domain.billing_cycle import (
    BillingPeriod,
    billing_period,
    next_cycle_start,
)
from services.accounts.domain.events import (
    AccountCreated,
    AccountStateChanged,
    AccountUpdated,
    CustomerCreated,
    CustomerUpdated,
    SubscriptionChanged,
    SubscriptionChangeKind,
)
from services.accounts.domain.lifecycle import AccountState, check_transition
from services.common.codes import PLAN_CODE  # one rule with rating's catalog (issue 9 item 10)
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.money import Money

__all__ = [
    "ACCOUNT_MUTABLE_FIELDS",
    "CUSTOMER_MUTABLE_FIELDS",
    "PLAN_CODE",
    "REFERRAL_CODE",
    "Account",
    "AccountRevision",
    "AccountState",
    "AddOn",
    "ChangeTiming",
    "Customer",
    "CustomerRevision",
    "PaymentMode",
    "PendingPlanChange",
    "StateChange",
    "Subscription",
    "SubscriptionState",
    "check_parent",
    "credit_limit_problem",
    "new_referral_code",
]

# Referral codes are read aloud and typed from flyers: no 0/O, 1/I/L, U.
REFERRAL_CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
REFERRAL_CODE_LENGTH: Final = 8
REFERRAL_CODE: Final = re.compile(rf"^[{REFERRAL_CODE_ALPHABET}]{{{REFERRAL_CODE_LENGTH}}}$")
DEFAULT_LANGUAGE: Final = "en"


def new_referral_code() -> str:
    """A random code; 30^8 (6.5e11) values make a collision rare, the table's unique key exact."""
    return "".join(secrets.choice(REFERRAL_CODE_ALPHABET) for _ in range(REFERRAL_CODE_LENGTH))


class PaymentMode(StrEnum):
    PREPAID = "PREPAID"
    POSTPAID = "POSTPAID"
    HYBRID = "HYBRID"


class SubscriptionState(StrEnum):
    ACTIVE = "ACTIVE"
    CANCELLED = "CANCELLED"


class ChangeTiming(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    END_OF_CYCLE = "END_OF_CYCLE"


# -- customers ------------------------------------------------------------------------------

CUSTOMER_MUTABLE_FIELDS: Final = frozenset(
    {"display_name", "email", "phone_number", "language_code", "reseller_id", "group_id", "vat_id"}
)


@dataclass(frozen=True)
class CustomerRevision:
    """New values for the customer fields named in ``fields``; the others are ignored."""

    fields: frozenset[str]
    display_name: str = ""
    email: str = ""
    phone_number: str = ""
    language_code: str = ""
    reseller_id: str = ""
    group_id: str = ""
    vat_id: str = ""


@dataclass(eq=False)
class Customer:
    customer_id: str
    display_name: str
    email: str
    phone_number: str
    language_code: str
    reseller_id: str
    group_id: str
    referral_code: str
    referred_by: str
    referrer_customer_id: str | None
    referrals_count: int
    create_time: datetime
    update_time: datetime
    # The operator's own reference (unique); ``ext:<ref>`` names the customer anywhere.
    external_ref: str | None = None
    # VAT identifier for invoices (reverse charge, intra-community supply), or "".
    vat_id: str = ""

    @classmethod
    def register(
        cls,
        *,
        customer_id: str,
        display_name: str,
        email: str,
        phone_number: str,
        language_code: str,
        reseller_id: str,
        group_id: str,
        referral_code: str,
        referrer: Customer | None,
        now: datetime,
        external_ref: str | None = None,
        vat_id: str = "",
    ) -> tuple[Customer, CustomerCreated]:
        customer = cls(
            customer_id=customer_id,
            display_name=display_name,
            email=email,
            phone_number=phone_number,
            language_code=language_code or DEFAULT_LANGUAGE,
            reseller_id=reseller_id,
            group_id=group_id,
            referral_code=referral_code,
            referred_by=referrer.referral_code if referrer else "",
            referrer_customer_id=referrer.customer_id if referrer else None,
            # Credited asynchronously by the referrals consumer, never here: one
            # aggregate per transaction.
            referrals_count=0,
            create_time=now,
            update_time=now,
            external_ref=external_ref,
            vat_id=vat_id,
        )
        event = CustomerCreated(
            customer_id=customer.customer_id,
            display_name=customer.display_name,
            email=customer.email,
            language_code=customer.language_code,
            reseller_id=customer.reseller_id,
            group_id=customer.group_id,
            referral_code=customer.referral_code,
            referred_by=customer.referred_by,
            referrer_customer_id=customer.referrer_customer_id or "",
            create_time=now,
            external_ref=external_ref or "",
            phone_number=customer.phone_number,
            vat_id=customer.vat_id,
        )
        return customer, event

    def revise(self, revision: CustomerRevision, now: datetime) -> CustomerUpdated | None:
        """Apply the revision; None when it changes nothing (no event, nothing to write)."""
        unknown = revision.fields - CUSTOMER_MUTABLE_FIELDS
        if unknown:
            raise InvalidArgument.field(
                "update_mask", f"cannot change {', '.join(sorted(unknown))}"
            )
        values = {name: getattr(revision, name) for name in revision.fields}
        if "language_code" in values:
            values["language_code"] = values["language_code"] or DEFAULT_LANGUAGE
        changed = tuple(sorted(n for n, v in values.items() if getattr(self, n) != v))
        if not changed:
            return None
        for name in changed:
            setattr(self, name, values[name])
        self.update_time = now
        return CustomerUpdated(
            customer_id=self.customer_id,
            changed_fields=changed,
            display_name=self.display_name,
            email=self.email,
            phone_number=self.phone_number,
            language_code=self.language_code,
            reseller_id=self.reseller_id,
            group_id=self.group_id,
            update_time=now,
            vat_id=self.vat_id,
        )

    def credit_referral(self, now: datetime) -> None:
        self.referrals_count += 1
        self.update_time = now


# -- billing accounts -----------------------------------------------------------------------

ACCOUNT_MUTABLE_FIELDS: Final = frozenset(
    {
        "display_name",
        "time_zone",
        "bill_cycle_day",
        "tax_region",
        "payment_terms_days",
        "payment_mode",
        "credit_limit",
        "parent_account_id",
    }
)


def credit_limit_problem(
    payment_mode: PaymentMode, credit_limit: Money | None, currency_code: str
) -> str | None:
    """Why this credit limit does not fit the payment mode and currency, or None."""
    if payment_mode is PaymentMode.PREPAID:
        return "must not be set for a prepaid account" if credit_limit is not None else None
    if credit_limit is None:
        return f"is required for a {payment_mode.value.lower()} account"
    if credit_limit.currency != currency_code:
        return f"must be in the account's currency {currency_code}, not {credit_limit.currency}"
    if credit_limit.is_negative():
        return "must not be negative"
    return None


def _check_credit_limit(
    payment_mode: PaymentMode, credit_limit: Money | None, currency_code: str
) -> None:
    problem = credit_limit_problem(payment_mode, credit_limit, currency_code)
    if problem:
        raise InvalidArgument.field("account.credit_limit", problem)


@dataclass(frozen=True)
class AccountRevision:
    """New values for the account fields named in ``fields``; the others are ignored."""

    fields: frozenset[str]
    display_name: str = ""
    time_zone: str = ""
    bill_cycle_day: int = 1
    tax_region: str = ""
    payment_terms_days: int = 0
    payment_mode: PaymentMode = PaymentMode.PREPAID
    credit_limit: Money | None = None
    parent_account_id: str | None = None


class _AccountFacts(TypedDict):
    """The fields ``AccountCreated`` and ``AccountUpdated`` share."""

    account_id: str
    customer_id: str
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
    external_ref: str
    customer_external_ref: str


@dataclass(eq=False)
class StateChange:
    """One entry of an account's state history."""

    sequence: int  # 1, 2, ... per account: orders the history and pages through it
    from_state: AccountState
    to_state: AccountState
    reason: str
    change_time: datetime


@dataclass(eq=False)
class Account:
    account_id: str
    customer_id: str
    display_name: str
    currency_code: str
    time_zone: str
    bill_cycle_day: int
    tax_region: str
    payment_terms_days: int
    payment_mode: PaymentMode
    credit_limit: Money | None
    parent_account_id: str | None
    state: AccountState
    state_reason: str
    state_change_time: datetime
    create_time: datetime
    update_time: datetime
    state_changes: list[StateChange] = field(default_factory=list)
    # The operator's own reference (unique); ``ext:<ref>`` names the account anywhere.
    external_ref: str | None = None

    @classmethod
    def open(
        cls,
        *,
        account_id: str,
        customer: Customer,
        display_name: str,
        currency_code: str,
        time_zone: str,
        bill_cycle_day: int,
        tax_region: str,
        payment_terms_days: int,
        payment_mode: PaymentMode,
        credit_limit: Money | None,
        parent_chain: Sequence[Account],
        now: datetime,
        external_ref: str | None = None,
    ) -> tuple[Account, AccountCreated]:
        """A new ACTIVE account; ``parent_chain`` is the parent and its ancestors, if any."""
        _check_credit_limit(payment_mode, credit_limit, currency_code)
        if parent_chain:
            check_parent(None, customer.customer_id, parent_chain)
        account = cls(
            account_id=account_id,
            customer_id=customer.customer_id,
            display_name=display_name,
            currency_code=currency_code,
            time_zone=time_zone,
            bill_cycle_day=bill_cycle_day,
            tax_region=tax_region,
            payment_terms_days=payment_terms_days,
            payment_mode=payment_mode,
            credit_limit=credit_limit,
            parent_account_id=parent_chain[0].account_id if parent_chain else None,
            state=AccountState.ACTIVE,
            state_reason="",
            state_change_time=now,
            create_time=now,
            update_time=now,
            external_ref=external_ref,
        )
        return account, AccountCreated(**account._facts(customer), create_time=now)

    def revise(
        self,
        revision: AccountRevision,
        customer: Customer,
        parent_chain: Sequence[Account],
        now: datetime,
    ) -> AccountUpdated | None:
        """Apply the revision; None when it changes nothing.

        ``parent_chain`` is the new parent and its ancestors when the revision sets
        a parent (empty otherwise).
        """
        if self.state is AccountState.CLOSED:
            raise FailedPrecondition(
                f"account {self.account_id} is CLOSED and can no longer be changed",
                reason="ACCOUNT_CLOSED",
                metadata={"account_id": self.account_id},
            )
        unknown = revision.fields - ACCOUNT_MUTABLE_FIELDS
        if unknown:
            raise InvalidArgument.field(
                "update_mask", f"cannot change {', '.join(sorted(unknown))}"
            )
        values = {name: getattr(revision, name) for name in revision.fields}
        payment_mode = values.get("payment_mode", self.payment_mode)
        credit_limit = values.get("credit_limit", self.credit_limit)
        if "payment_mode" in values or "credit_limit" in values:
            _check_credit_limit(payment_mode, credit_limit, self.currency_code)
        if values.get("parent_account_id"):
            check_parent(self.account_id, self.customer_id, parent_chain)
        changed = tuple(sorted(n for n, v in values.items() if getattr(self, n) != v))
        if not changed:
            return None
        for name in changed:
            setattr(self, name, values[name])
        self.update_time = now
        return AccountUpdated(**self._facts(customer), changed_fields=changed, update_time=now)

    # -- lifecycle --------------------------------------------------------------------------
    def suspend(self, reason: str, now: datetime) -> AccountStateChanged:
        return self._change_state(AccountState.SUSPENDED, reason, now)

    def bar(self, reason: str, now: datetime) -> AccountStateChanged:
        return self._change_state(AccountState.BARRED, reason, now)

    def restore(self, reason: str, now: datetime) -> AccountStateChanged:
        return self._change_state(AccountState.ACTIVE, reason, now)

    def close(self, reason: str, now: datetime) -> AccountStateChanged:
        """Close for good; the caller cancels the account's subscriptions in the same unit."""
        return self._change_state(AccountState.CLOSED, reason, now)

    def _change_state(
        self, target: AccountState, reason: str, now: datetime
    ) -> AccountStateChanged:
        check_transition(self.account_id, self.state, target)
        previous = self.state
        self.state_changes.append(
            StateChange(
                sequence=len(self.state_changes) + 1,
                from_state=previous,
                to_state=target,
                reason=reason,
                change_time=now,
            )
        )
        self.state = target
        self.state_reason = reason
        self.state_change_time = now
        self.update_time = now
        return AccountStateChanged(
            account_id=self.account_id,
            customer_id=self.customer_id,
            from_state=previous.value,
            to_state=target.value,
            reason=reason,
            change_time=now,
        )

    # -- what the state allows --------------------------------------------------------------
    def check_subscriptions_can_grow(self) -> None:
        """New subscriptions, plan changes and add-ons need an ACTIVE account."""
        if self.state is not AccountState.ACTIVE:
            raise self._not_active("subscriptions cannot be created or extended")

    def check_subscriptions_can_shrink(self) -> None:
        """Removing add-ons and cancelling is allowed on ACTIVE and SUSPENDED accounts."""
        if self.state not in (AccountState.ACTIVE, AccountState.SUSPENDED):
            raise self._not_active("its subscriptions cannot be changed")

    def _not_active(self, consequence: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"account {self.account_id} is {self.state.value}: {consequence}",
            reason="ACCOUNT_NOT_ACTIVE",
            metadata={"account_id": self.account_id, "state": self.state.value},
        )

    def billing_period(self, instant: datetime) -> BillingPeriod:
        return billing_period(instant, self.bill_cycle_day, self.time_zone)

    def _facts(self, customer: Customer) -> _AccountFacts:
        return {
            "account_id": self.account_id,
            "customer_id": self.customer_id,
            "reseller_id": customer.reseller_id,
            "group_id": customer.group_id,
            "currency_code": self.currency_code,
            "time_zone": self.time_zone,
            "bill_cycle_day": self.bill_cycle_day,
            "tax_region": self.tax_region,
            "payment_terms_days": self.payment_terms_days,
            "payment_mode": self.payment_mode.value,
            "credit_limit": self.credit_limit,
            "parent_account_id": self.parent_account_id or "",
            "state": self.state.value,
            "external_ref": self.external_ref or "",
            "customer_external_ref": customer.external_ref or "",
        }


def check_parent(account_id: str | None, customer_id: str, parent_chain: Sequence[Account]) -> None:
    """Refuse a parent of another customer, a closed parent, or a cycle.

    ``parent_chain`` is the proposed parent followed by its ancestors; ``account_id``
    is the account being re-parented (None for a new account).
    """
    parent = parent_chain[0]
    if parent.customer_id != customer_id:
        raise InvalidArgument.field(
            "account.parent_account_id",
            "must be an account of the same customer",
        )
    if parent.state is AccountState.CLOSED:
        raise FailedPrecondition(
            f"parent account {parent.account_id} is CLOSED",
            reason="PARENT_ACCOUNT_CLOSED",
            metadata={"parent_account_id": parent.account_id},
        )
    if account_id is not None and any(a.account_id == account_id for a in parent_chain):
        raise InvalidArgument.field(
            "account.parent_account_id",
            "would make the account its own ancestor",
        )


# -- subscriptions ----------------------------------------------------------------------------


@dataclass(eq=False)
class AddOn:
    add_on_code: str
    quantity: int
    add_time: datetime


@dataclass(frozen=True)
class PendingPlanChange:
    plan_code: str
    effective_time: datetime


@dataclass(eq=False)
class Subscription:
    subscription_id: str
    account_id: str
    plan_code: str
    state: SubscriptionState
    start_time: datetime
    create_time: datetime
    update_time: datetime
    add_ons: list[AddOn] = field(default_factory=list)
    # A plan change scheduled for the next cycle boundary (both set or both None).
    pending_plan_code: str | None = None
    pending_plan_effective_time: datetime | None = None
    # When it ended, or will end when cancel_at_period_end is set.
    cancel_time: datetime | None = None
    cancel_at_period_end: bool = False
    # Service identifier keys (``msisdn:+31612345678``, ``sip:...``), one a line.
    service_ids: str = ""

    @classmethod
    def start(
        cls,
        *,
        subscription_id: str,
        account: Account,
        plan_code: str,
        now: datetime,
        start_time: datetime | None = None,
        service_ids: Sequence[str] = (),
    ) -> tuple[Subscription, SubscriptionChanged]:
        """A new ACTIVE subscription from ``start_time`` (default now; may be in the past
        for a migration or late usage, never in the future)."""
        account.check_subscriptions_can_grow()
        start = now if start_time is None else start_time
        if start > now:
            raise InvalidArgument.field(
                "subscription.start_time", "must not be in the future (it may be in the past)"
            )
        subscription = cls(
            subscription_id=subscription_id,
            account_id=account.account_id,
            plan_code=plan_code,
            state=SubscriptionState.ACTIVE,
            start_time=start,
            create_time=now,
            update_time=now,
            service_ids="\n".join(service_ids),
        )
        return subscription, subscription._event(
            account, SubscriptionChangeKind.CREATED, start, new_plan=plan_code
        )

    @property
    def service_id_keys(self) -> tuple[str, ...]:
        return tuple(key for key in self.service_ids.split("\n") if key)

    @property
    def pending_plan_change(self) -> PendingPlanChange | None:
        if self.pending_plan_code is None or self.pending_plan_effective_time is None:
            return None
        return PendingPlanChange(self.pending_plan_code, self.pending_plan_effective_time)

    def current_period(self, account: Account, now: datetime) -> BillingPeriod | None:
        """The bill cycle running now, from the account's cycle day; None once cancelled."""
        if self.state is SubscriptionState.CANCELLED:
            return None
        return account.billing_period(now)

    def change_plan(
        self, account: Account, plan_code: str, timing: ChangeTiming, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_grow()
        if self.cancel_at_period_end:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} ends at the end of this cycle",
                reason="CANCELLATION_SCHEDULED",
                metadata={"subscription_id": self.subscription_id},
            )
        if plan_code == self.plan_code:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} is already on plan {plan_code}",
                reason="PLAN_UNCHANGED",
                metadata={"subscription_id": self.subscription_id, "plan_code": plan_code},
            )
        old_plan = self.plan_code
        self.update_time = now
        if timing is ChangeTiming.IMMEDIATE:
            self.plan_code = plan_code
            self._drop_pending_plan_change()  # superseded by this change
            return self._event(account, SubscriptionChangeKind.PLAN_CHANGED, now, old_plan=old_plan)
        boundary = next_cycle_start(now, account.bill_cycle_day, account.time_zone)
        # A later END_OF_CYCLE request replaces the one already scheduled.
        self.pending_plan_code = plan_code
        self.pending_plan_effective_time = boundary
        return self._event(
            account,
            SubscriptionChangeKind.PLAN_CHANGE_SCHEDULED,
            boundary,
            old_plan=old_plan,
            new_plan=plan_code,
        )

    def add_add_on(
        self, account: Account, add_on_code: str, quantity: int, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_grow()
        if self._find_add_on(add_on_code) is not None:
            raise AlreadyExists(
                f"subscription {self.subscription_id} already has add-on {add_on_code}",
                reason="ADD_ON_ALREADY_ACTIVE",
                metadata={"subscription_id": self.subscription_id, "add_on_code": add_on_code},
            )
        self.add_ons.append(AddOn(add_on_code=add_on_code, quantity=quantity, add_time=now))
        self.update_time = now
        return self._event(
            account,
            SubscriptionChangeKind.ADDON_ADDED,
            now,
            add_on_code=add_on_code,
            add_on_quantity=quantity,
        )

    def remove_add_on(
        self, account: Account, add_on_code: str, now: datetime
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_shrink()
        add_on = self._find_add_on(add_on_code)
        if add_on is None:
            raise NotFound(
                f"subscription {self.subscription_id} has no add-on {add_on_code}",
                reason="ADD_ON_NOT_FOUND",
                metadata={"subscription_id": self.subscription_id, "add_on_code": add_on_code},
            )
        self.add_ons.remove(add_on)
        self.update_time = now
        return self._event(
            account,
            SubscriptionChangeKind.ADDON_REMOVED,
            now,
            add_on_code=add_on_code,
            add_on_quantity=add_on.quantity,
        )

    def cancel(
        self, account: Account, timing: ChangeTiming, now: datetime, reason: str = ""
    ) -> SubscriptionChanged:
        self._check_active()
        account.check_subscriptions_can_shrink()
        if timing is ChangeTiming.IMMEDIATE:
            return self._end(account, now, reason)
        if self.cancel_at_period_end:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} already ends at the end of this cycle",
                reason="CANCELLATION_SCHEDULED",
                metadata={"subscription_id": self.subscription_id},
            )
        boundary = next_cycle_start(now, account.bill_cycle_day, account.time_zone)
        self.cancel_at_period_end = True
        self.cancel_time = boundary
        self._drop_pending_plan_change()  # nothing to change to once it ends at the boundary
        self.update_time = now
        return self._event(
            account, SubscriptionChangeKind.CANCEL_SCHEDULED, boundary, reason=reason
        )

    def end_with_account(self, account: Account, now: datetime) -> SubscriptionChanged:
        """Cancel at once because the account closed (whatever the account's state allows)."""
        self._check_active()
        return self._end(account, now, f"account closed: {account.state_reason}")

    def is_due(self, now: datetime) -> bool:
        """A scheduled plan change or cancellation whose time has come."""
        if self.state is not SubscriptionState.ACTIVE:
            return False
        pending = self.pending_plan_change
        if pending is not None and pending.effective_time <= now:
            return True
        return bool(
            self.cancel_at_period_end and self.cancel_time is not None and self.cancel_time <= now
        )

    def apply_due_changes(self, account: Account, now: datetime) -> list[SubscriptionChanged]:
        """Carry out what was scheduled, effective at the scheduled time (not ``now``),
        so invoicing prorates correctly however late the scheduler runs."""
        changes: list[SubscriptionChanged] = []
        pending = self.pending_plan_change
        if self.state is SubscriptionState.ACTIVE and pending and pending.effective_time <= now:
            old_plan = self.plan_code
            self.plan_code = pending.plan_code
            self._drop_pending_plan_change()
            self.update_time = now
            changes.append(
                self._event(
                    account,
                    SubscriptionChangeKind.PLAN_CHANGED,
                    pending.effective_time,
                    old_plan=old_plan,
                    reason="scheduled plan change",
                )
            )
        if (
            self.state is SubscriptionState.ACTIVE
            and self.cancel_at_period_end
            and self.cancel_time is not None
            and self.cancel_time <= now
        ):
            self.state = SubscriptionState.CANCELLED
            self.update_time = now
            changes.append(
                self._event(
                    account,
                    SubscriptionChangeKind.CANCELLED,
                    self.cancel_time,
                    reason="scheduled cancellation",
                )
            )
        return changes

    # -- internals --------------------------------------------------------------------------
    def _check_active(self) -> None:
        if self.state is SubscriptionState.CANCELLED:
            raise FailedPrecondition(
                f"subscription {self.subscription_id} is cancelled",
                reason="SUBSCRIPTION_CANCELLED",
                metadata={"subscription_id": self.subscription_id},
            )

    def _end(self, account: Account, at: datetime, reason: str) -> SubscriptionChanged:
        self.state = SubscriptionState.CANCELLED
        self.cancel_time = at
        self.cancel_at_period_end = False
        self._drop_pending_plan_change()
        self.update_time = at
        return self._event(account, SubscriptionChangeKind.CANCELLED, at, reason=reason)

    def _drop_pending_plan_change(self) -> None:
        self.pending_plan_code = None
        self.pending_plan_effective_time = None

    def _find_add_on(self, add_on_code: str) -> AddOn | None:
        return next((a for a in self.add_ons if a.add_on_code == add_on_code), None)

    def _event(
        self,
        account: Account,
        kind: SubscriptionChangeKind,
        effective: datetime,
        *,
        old_plan: str | None = None,
        new_plan: str | None = None,
        add_on_code: str = "",
        add_on_quantity: int = 0,
        reason: str = "",
    ) -> SubscriptionChanged:
        period = account.billing_period(effective)
        return SubscriptionChanged(
            subscription_id=self.subscription_id,
            account_id=account.account_id,
            customer_id=account.customer_id,
            kind=kind,
            plan_code=self.plan_code,
            old_plan_code=self.plan_code if old_plan is None else old_plan,
            new_plan_code=self.plan_code if new_plan is None else new_plan,
            add_on_code=add_on_code,
            add_on_quantity=add_on_quantity,
            effective_time=effective,
            period_start=period.start,
            period_end=period.end,
            currency_code=account.currency_code,
            time_zone=account.time_zone,
            bill_cycle_day=account.bill_cycle_day,
            reason=reason,
            service_ids=self.service_id_keys,
        )
