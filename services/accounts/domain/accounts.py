"""Billing accounts: opening, revisions, the state machine and the account hierarchy.

An ``Account`` belongs to a customer (``customers``) and moves ACTIVE ->
SUSPENDED / BARRED -> CLOSED through ``lifecycle.check_transition``, keeping its
state history. Credit limits must fit the payment mode; a parent account must be
an open account of the same customer and never a descendant. Subscriptions
(``subscriptions``) ask the account whether they may grow or shrink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, TypedDict

from services.accounts.domain.billing_cycle import BillingPeriod, billing_period
from services.accounts.domain.customers import Customer
from services.accounts.domain.events import AccountCreated, AccountStateChanged, AccountUpdated
from services.accounts.domain.lifecycle import AccountState, check_transition
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import Money


class PaymentMode(StrEnum):
    PREPAID = "PREPAID"
    POSTPAID = "POSTPAID"
    HYBRID = "HYBRID"


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
