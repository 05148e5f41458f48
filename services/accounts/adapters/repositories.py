"""SQL repositories of customers, accounts and subscriptions (one session each).

Queries name table columns rather than mapped attributes, so they type-check
against the plain domain classes. Lists are keyset-paginated on the id, which is
time-ordered, so pages come in creation order and stay stable under inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from services.accounts.adapters.orm import (
    accounts,
    customers,
    service_identifiers,
    subscriptions,
)
from services.accounts.domain.model import (
    Account,
    AccountState,
    Customer,
    Subscription,
    SubscriptionState,
)
from services.common.codes import EXTERNAL_PREFIX


def _customer_key(customer_id: str) -> Any:
    """A customer id, or the id of the customer an ``ext:<ref>`` names (a subquery)."""
    if not customer_id.startswith(EXTERNAL_PREFIX):
        return customer_id
    ref = customer_id.removeprefix(EXTERNAL_PREFIX)
    return select(customers.c.customer_id).where(customers.c.external_ref == ref).scalar_subquery()


def _account_key(account_id: str) -> Any:
    """An account id, or the id of the account an ``ext:<ref>`` names (a subquery)."""
    if not account_id.startswith(EXTERNAL_PREFIX):
        return account_id
    ref = account_id.removeprefix(EXTERNAL_PREFIX)
    return select(accounts.c.account_id).where(accounts.c.external_ref == ref).scalar_subquery()


class SqlCustomerRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, customer: Customer) -> None:
        self._session.add(customer)

    def get(self, customer_id: str) -> Customer | None:
        """By id, or by external reference written ``ext:<ref>`` (issue 9 item 12)."""
        if customer_id.startswith(EXTERNAL_PREFIX):
            ref = customer_id.removeprefix(EXTERNAL_PREFIX)
            return self._session.scalars(
                select(Customer).where(customers.c.external_ref == ref)
            ).first()
        return self._session.get(Customer, customer_id)

    def get_by_referral_code(self, referral_code: str) -> Customer | None:
        query = select(Customer).where(customers.c.referral_code == referral_code)
        return self._session.scalars(query).first()

    def list(
        self, *, reseller_id: str = "", group_id: str = "", after: str = "", limit: int
    ) -> Sequence[Customer]:
        query = select(Customer)
        if reseller_id:
            query = query.where(customers.c.reseller_id == reseller_id)
        if group_id:
            query = query.where(customers.c.group_id == group_id)
        if after:
            query = query.where(customers.c.customer_id > after)
        query = query.order_by(customers.c.customer_id).limit(limit)
        return self._session.scalars(query).all()


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, account: Account) -> None:
        self._session.add(account)

    def get(self, account_id: str) -> Account | None:
        """By id, or by external reference written ``ext:<ref>`` (issue 9 item 12)."""
        if account_id.startswith(EXTERNAL_PREFIX):
            ref = account_id.removeprefix(EXTERNAL_PREFIX)
            return self._session.scalars(
                select(Account).where(accounts.c.external_ref == ref)
            ).first()
        return self._session.get(Account, account_id)

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
        query = select(Account)
        if customer_id:
            query = query.where(accounts.c.customer_id == _customer_key(customer_id))
        if state is not None:
            query = query.where(accounts.c.state == state)
        if reseller_id or group_id:
            # Reseller and group belong to the customer: one source of truth, joined here.
            query = query.join(customers, customers.c.customer_id == accounts.c.customer_id)
            if reseller_id:
                query = query.where(customers.c.reseller_id == reseller_id)
            if group_id:
                query = query.where(customers.c.group_id == group_id)
        if after:
            query = query.where(accounts.c.account_id > after)
        query = query.order_by(accounts.c.account_id).limit(limit)
        return self._session.scalars(query).all()

    def guard(self, account: Account) -> None:
        # Marking an unchanged column modified makes the flush issue
        # UPDATE ... SET version = v + 1 WHERE version = v: a concurrent change of
        # the account (or another guard) makes one of the two fail.
        flag_modified(account, "state")


class SqlSubscriptionRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, subscription: Subscription) -> None:
        self._session.add(subscription)

    def get(self, subscription_id: str) -> Subscription | None:
        return self._session.get(Subscription, subscription_id)

    def list(
        self,
        *,
        account_id: str = "",
        state: SubscriptionState | None = None,
        after: str = "",
        limit: int,
    ) -> Sequence[Subscription]:
        query = select(Subscription)
        if account_id:
            query = query.where(subscriptions.c.account_id == _account_key(account_id))
        if state is not None:
            query = query.where(subscriptions.c.state == state)
        if after:
            query = query.where(subscriptions.c.subscription_id > after)
        query = query.order_by(subscriptions.c.subscription_id).limit(limit)
        return self._session.scalars(query).all()

    def service_id_owners(self, keys: Sequence[str]) -> dict[str, str]:
        """Subscription ids holding any of these service identifier keys."""
        if not keys:
            return {}
        rows = self._session.execute(
            select(service_identifiers.c.key, service_identifiers.c.subscription_id).where(
                service_identifiers.c.key.in_(list(keys))
            )
        )
        return {key: owner for key, owner in rows}

    def claim_service_ids(self, subscription: Subscription) -> None:
        """Record the subscription's identifiers (the primary key keeps them unique)."""
        keys = subscription.service_id_keys
        if keys:
            self._session.flush()  # the subscription row first (foreign key)
            self._session.execute(
                insert(service_identifiers),
                [
                    {
                        "key": key,
                        "subscription_id": subscription.subscription_id,
                        "account_id": subscription.account_id,
                    }
                    for key in keys
                ],
            )

    def active_of_account(self, account_id: str) -> Sequence[Subscription]:
        query = (
            select(Subscription)
            .where(
                subscriptions.c.account_id == account_id,
                subscriptions.c.state == SubscriptionState.ACTIVE,
            )
            .order_by(subscriptions.c.subscription_id)
        )
        return self._session.scalars(query).all()

    def due_ids(self, now: datetime, limit: int) -> Sequence[str]:
        query = (
            select(subscriptions.c.subscription_id)
            .where(
                subscriptions.c.state == SubscriptionState.ACTIVE,
                or_(
                    subscriptions.c.pending_plan_effective_time <= now,
                    and_(
                        subscriptions.c.cancel_at_period_end.is_(True),
                        subscriptions.c.cancel_time <= now,
                    ),
                ),
            )
            .order_by(subscriptions.c.subscription_id)
            .limit(limit)
        )
        return self._session.scalars(query).all()
