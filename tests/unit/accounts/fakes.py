"""In-memory unit of work for the accounts handlers: real transactions, no I/O.

Each ``with uow:`` works on a deep copy of the committed state; ``commit``
publishes the copy (and the events), leaving the block without it discards
everything, so a handler that raises is seen to have written nothing, as with SQL.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from services.accounts.domain.model import (
    Account,
    AccountState,
    Customer,
    Subscription,
    SubscriptionState,
)
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.clock import Clock, ManualClock
from services.common.events import DomainEvent
from services.common.unit_of_work import RememberedRequest


@dataclass
class FakeState:
    customers: dict[str, Customer] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    requests: dict[tuple[str, str], RememberedRequest] = field(default_factory=dict)
    processed: set[tuple[str, str]] = field(default_factory=set)
    events: list[DomainEvent] = field(default_factory=list)


class FakeDatabase:
    """The committed state, shared by every unit of work of one test."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.commits = 0
        # Accounts whose concurrent change would have aborted a unit (SQL: version bump).
        self.guarded: list[str] = []

    @property
    def events(self) -> list[DomainEvent]:
        return self.state.events

    def events_of(self, kind: type[DomainEvent]) -> list[DomainEvent]:
        return [e for e in self.state.events if isinstance(e, kind)]


class FakeCustomers:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def add(self, customer: Customer) -> None:
        self._state.customers[customer.customer_id] = customer

    def get(self, customer_id: str) -> Customer | None:
        if customer_id.startswith("ext:"):
            ref = customer_id[4:]
            return next((c for c in self._state.customers.values() if c.external_ref == ref), None)
        return self._state.customers.get(customer_id)

    def get_by_referral_code(self, referral_code: str) -> Customer | None:
        return next(
            (c for c in self._state.customers.values() if c.referral_code == referral_code), None
        )

    def list(
        self, *, reseller_id: str = "", group_id: str = "", after: str = "", limit: int
    ) -> Sequence[Customer]:
        found = [
            c
            for c in sorted(self._state.customers.values(), key=lambda c: c.customer_id)
            if (not reseller_id or c.reseller_id == reseller_id)
            and (not group_id or c.group_id == group_id)
            and c.customer_id > after
        ]
        return found[:limit]


class FakeAccounts:
    def __init__(self, state: FakeState, guarded: list[str]) -> None:
        self._state = state
        self._guarded = guarded

    def add(self, account: Account) -> None:
        self._state.accounts[account.account_id] = account

    def get(self, account_id: str) -> Account | None:
        if account_id.startswith("ext:"):
            ref = account_id[4:]
            return next((a for a in self._state.accounts.values() if a.external_ref == ref), None)
        return self._state.accounts.get(account_id)

    def list(
        self,
        *,
        customer_id: str = "",
        state: AccountState | None = None,
        reseller_id: str = "",
        group_id: str = "",
        after: str = "",
        limit: int,
    ) -> Sequence[Account]:
        def matches(a: Account) -> bool:
            customer = self._state.customers[a.customer_id]
            return (
                (not customer_id or a.customer_id == customer_id)
                and (state is None or a.state is state)
                and (not reseller_id or customer.reseller_id == reseller_id)
                and (not group_id or customer.group_id == group_id)
                and a.account_id > after
            )

        found = sorted(self._state.accounts.values(), key=lambda a: a.account_id)
        return [a for a in found if matches(a)][:limit]

    def guard(self, account: Account) -> None:
        self._guarded.append(account.account_id)


class FakeSubscriptions:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def add(self, subscription: Subscription) -> None:
        self._state.subscriptions[subscription.subscription_id] = subscription

    def get(self, subscription_id: str) -> Subscription | None:
        return self._state.subscriptions.get(subscription_id)

    def list(
        self,
        *,
        account_id: str = "",
        state: SubscriptionState | None = None,
        after: str = "",
        limit: int,
    ) -> Sequence[Subscription]:
        found = sorted(self._state.subscriptions.values(), key=lambda s: s.subscription_id)
        return [
            s
            for s in found
            if (not account_id or s.account_id == account_id)
            and (state is None or s.state is state)
            and s.subscription_id > after
        ][:limit]

    def service_id_owners(self, keys: Sequence[str]) -> dict[str, str]:
        return {
            key: sub.subscription_id
            for sub in self._state.subscriptions.values()
            for key in sub.service_id_keys
            if key in keys
        }

    def claim_service_ids(self, subscription: Subscription) -> None:
        """The fake finds identifiers on the subscriptions themselves."""

    def active_of_account(self, account_id: str) -> Sequence[Subscription]:
        return self.list(account_id=account_id, state=SubscriptionState.ACTIVE, limit=10**9)

    def due_ids(self, now: datetime, limit: int) -> Sequence[str]:
        found = sorted(self._state.subscriptions.values(), key=lambda s: s.subscription_id)
        return [s.subscription_id for s in found if s.is_due(now)][:limit]


class FakeUnitOfWork(AccountsUnitOfWork):
    def __init__(self, database: FakeDatabase | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self.database = database or FakeDatabase()
        self.clock = clock or ManualClock()
        self._work = FakeState()

    def __enter__(self) -> Self:
        self._work = copy.deepcopy(self.database.state)
        self._rebind()
        return super().__enter__()

    def _commit(self) -> None:
        self._work.events.extend(self.pending_events)
        self.database.state = self._work
        self.database.commits += 1
        # Objects handed out stay usable after commit, as with expire_on_commit=False;
        # a later commit in the same block publishes a fresh copy.
        self._work = copy.deepcopy(self._work)
        self._rebind()

    def rollback(self) -> None:
        self._work = copy.deepcopy(self.database.state)

    def _rebind(self) -> None:
        self.customers = FakeCustomers(self._work)
        self.accounts = FakeAccounts(self._work, self.database.guarded)
        self.subscriptions = FakeSubscriptions(self._work)

    def find_request(self, scope: str, request_id: str) -> RememberedRequest | None:
        return self._work.requests.get((scope, request_id))

    def remember_request(
        self, scope: str, request_id: str, fingerprint: str, resource_id: str
    ) -> None:
        if request_id:
            self._work.requests[(scope, request_id)] = RememberedRequest(fingerprint, resource_id)

    def mark_processed(self, consumer: str, event_id: str) -> bool:
        if (consumer, event_id) in self._work.processed:
            return False
        self._work.processed.add((consumer, event_id))
        return True
