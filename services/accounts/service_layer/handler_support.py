"""What the accounts handlers share: idempotency keys, loading aggregates or NotFound,
unique external references, pages, and the retried read.

Idempotency (AIP-155): the scope of a request key is the command's name, so the
same key may serve different methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from services.accounts.domain.model import Account, Customer, Subscription
from services.accounts.service_layer.commands import Command, Page
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.codes import EXTERNAL_PREFIX
from services.common.errors import Aborted, AlreadyExists, NotFound

T = TypeVar("T")


def _scope(cmd: Command) -> str:
    return type(cmd).__name__


def _replayed(uow: AccountsUnitOfWork, cmd: Command) -> str | None:
    return uow.replayed_resource(_scope(cmd), cmd.request_id, cmd.fingerprint)


def _remember(uow: AccountsUnitOfWork, cmd: Command, resource_id: str) -> None:
    uow.remember_request(_scope(cmd), cmd.request_id, cmd.fingerprint, resource_id)


def _customer(uow: AccountsUnitOfWork, customer_id: str) -> Customer:
    customer = uow.customers.get(customer_id)
    if customer is None:
        raise NotFound(
            f"customer {customer_id} not found",
            reason="CUSTOMER_NOT_FOUND",
            metadata={"customer_id": customer_id},
        )
    return customer


def _account(uow: AccountsUnitOfWork, account_id: str) -> Account:
    account = uow.accounts.get(account_id)
    if account is None:
        raise NotFound(
            f"account {account_id} not found",
            reason="ACCOUNT_NOT_FOUND",
            metadata={"account_id": account_id},
        )
    return account


def _subscription(uow: AccountsUnitOfWork, subscription_id: str) -> Subscription:
    subscription = uow.subscriptions.get(subscription_id)
    if subscription is None:
        raise NotFound(
            f"subscription {subscription_id} not found",
            reason="SUBSCRIPTION_NOT_FOUND",
            metadata={"subscription_id": subscription_id},
        )
    return subscription


def _check_ref_free(get: Callable[[str], object | None], ref: str | None, field: str) -> None:
    """External references are unique (issue 9 item 12)."""
    if ref and get(EXTERNAL_PREFIX + ref) is not None:
        raise AlreadyExists(
            f"external reference {ref!r} is already used",
            reason="EXTERNAL_REF_TAKEN",
            metadata={"field": field, "external_ref": ref},
        )


def _page(items: Sequence[T], limit: int, key: Callable[[T], str]) -> Page[T]:
    """The first ``limit`` items; a next key only when the repository found more."""
    if len(items) > limit:
        return Page(list(items[:limit]), key(items[limit - 1]))
    return Page(list(items))


def _retry_once_if_aborted(read: Callable[[], T]) -> T:
    """A read that applied due changes may lose to a concurrent writer; the second
    attempt then sees the winner's result."""
    try:
        return read()
    except Aborted:
        return read()
