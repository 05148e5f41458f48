"""The unit of work the accounts handlers run in, and the repositories it offers.

Repositories are protocols: the SQL adapter and the unit tests' in-memory fakes
both satisfy them. Lists are keyset-paginated on the (time-ordered) id: ``after``
is the last id of the previous page, and a repository returns up to ``limit``
items after it in id order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.accounts.domain.model import (
    Account,
    AccountState,
    Customer,
    Subscription,
    SubscriptionState,
)
from services.common.clock import Clock
from services.common.unit_of_work import UnitOfWork


class CustomerRepository(Protocol):
    def add(self, customer: Customer) -> None: ...

    def get(self, customer_id: str) -> Customer | None: ...

    def get_by_referral_code(self, referral_code: str) -> Customer | None: ...

    def list(
        self, *, reseller_id: str = "", group_id: str = "", after: str = "", limit: int
    ) -> Sequence[Customer]: ...


class AccountRepository(Protocol):
    def add(self, account: Account) -> None: ...

    def get(self, account_id: str) -> Account | None: ...

    def list(
        self,
        *,
        customer_id: str = "",
        state: AccountState | None = None,
        reseller_id: str = "",
        group_id: str = "",
        after: str = "",
        limit: int,
    ) -> Sequence[Account]: ...

    def guard(self, account: Account) -> None:
        """Make this unit's commit fail (ABORTED) if the account changes concurrently.

        Subscription changes depend on the account's state without changing the
        account; guarding it means a subscription cannot be added to an account
        that is being barred or closed at the same moment.
        """
        ...


class SubscriptionRepository(Protocol):
    def add(self, subscription: Subscription) -> None: ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    def list(
        self,
        *,
        account_id: str = "",
        state: SubscriptionState | None = None,
        after: str = "",
        limit: int,
    ) -> Sequence[Subscription]: ...

    def service_id_owners(self, keys: Sequence[str]) -> dict[str, str]:
        """Subscription ids already holding any of these service identifier keys."""
        ...

    def claim_service_ids(self, subscription: Subscription) -> None:
        """Record the subscription's service identifiers (unique)."""
        ...

    def active_of_account(self, account_id: str) -> Sequence[Subscription]: ...

    def due_ids(self, now: datetime, limit: int) -> Sequence[str]:
        """Ids of active subscriptions with a plan change or cancellation due by ``now``."""
        ...


class AccountsUnitOfWork(UnitOfWork):
    """One transaction over customers, accounts and subscriptions (plus outbox and keys)."""

    customers: CustomerRepository
    accounts: AccountRepository
    subscriptions: SubscriptionRepository
    # "Now" for the handlers: the service's one injectable clock.
    clock: Clock
