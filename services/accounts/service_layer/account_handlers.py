"""Billing account use cases: open, read, list and revise accounts, their state changes
(suspend, bar, restore, close with its subscriptions) and state history, and the
parent-account hierarchy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from services.accounts.domain.events import AccountStateChanged
from services.accounts.domain.model import Account, StateChange
from services.accounts.service_layer.commands import (
    BarAccount,
    ChangeAccountState,
    CloseAccount,
    CreateAccount,
    GetAccount,
    ListAccounts,
    ListAccountStateHistory,
    Page,
    RestoreAccount,
    SuspendAccount,
    UpdateAccount,
)
from services.accounts.service_layer.handler_support import (
    _account,
    _check_ref_free,
    _customer,
    _page,
    _remember,
    _replayed,
)
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.errors import NotFound
from services.common.ids import new_id

# Far deeper than any real hierarchy; bounds the walk if data were ever corrupt.
_MAX_HIERARCHY_DEPTH: Final = 64


def create_account(cmd: CreateAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        customer = _customer(uow, cmd.customer_id)
        parent_chain = _parent_chain(uow, cmd.parent_account_id)
        _check_ref_free(uow.accounts.get, cmd.external_ref, "account.external_ref")
        account, created = Account.open(
            account_id=new_id("acc"),
            customer=customer,
            display_name=cmd.display_name,
            currency_code=cmd.currency_code,
            time_zone=cmd.time_zone,
            bill_cycle_day=cmd.bill_cycle_day,
            tax_region=cmd.tax_region,
            payment_terms_days=cmd.payment_terms_days,
            payment_mode=cmd.payment_mode,
            credit_limit=cmd.credit_limit,
            parent_chain=parent_chain,
            now=uow.clock.now(),
            external_ref=cmd.external_ref,
        )
        uow.accounts.add(account)
        uow.publish(created)
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def get_account(query: GetAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        return _account(uow, query.account_id)


def list_accounts(query: ListAccounts, uow: AccountsUnitOfWork) -> Page[Account]:
    with uow:
        found = uow.accounts.list(
            customer_id=query.customer_id,
            state=query.state,
            reseller_id=query.reseller_id,
            group_id=query.group_id,
            after=query.after,
            limit=query.limit + 1,
        )
        return _page(found, query.limit, lambda a: a.account_id)


def update_account(cmd: UpdateAccount, uow: AccountsUnitOfWork) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        customer = _customer(uow, account.customer_id)
        revision = cmd.revision
        new_parent = revision.parent_account_id if "parent_account_id" in revision.fields else None
        updated = account.revise(
            revision, customer, _parent_chain(uow, new_parent), uow.clock.now()
        )
        if updated is not None:
            uow.publish(updated)
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def suspend_account(cmd: SuspendAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.suspend)


def bar_account(cmd: BarAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.bar)


def restore_account(cmd: RestoreAccount, uow: AccountsUnitOfWork) -> Account:
    return _change_state(cmd, uow, Account.restore)


def close_account(cmd: CloseAccount, uow: AccountsUnitOfWork) -> Account:
    """Close the account and, in the same transaction, cancel its active subscriptions."""
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        now = uow.clock.now()
        uow.publish(account.close(cmd.reason, now))
        for subscription in uow.subscriptions.active_of_account(account.account_id):
            uow.publish(subscription.end_with_account(account, now))
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account


def list_account_state_history(
    query: ListAccountStateHistory, uow: AccountsUnitOfWork
) -> Page[StateChange]:
    with uow:
        account = _account(uow, query.account_id)
        later = [c for c in account.state_changes if c.sequence > query.after_sequence]
        later.sort(key=lambda c: c.sequence)
        return _page(later[: query.limit + 1], query.limit, lambda c: str(c.sequence))


def _parent_chain(uow: AccountsUnitOfWork, parent_account_id: str | None) -> list[Account]:
    """The proposed parent followed by its ancestors; empty when there is no parent."""
    if not parent_account_id:
        return []
    parent = uow.accounts.get(parent_account_id)
    if parent is None:
        raise NotFound(
            f"parent account {parent_account_id} not found",
            reason="PARENT_ACCOUNT_NOT_FOUND",
            metadata={"parent_account_id": parent_account_id},
        )
    chain = [parent]
    seen = {parent.account_id}
    while chain[-1].parent_account_id and len(chain) < _MAX_HIERARCHY_DEPTH:
        ancestor = uow.accounts.get(chain[-1].parent_account_id)
        if ancestor is None or ancestor.account_id in seen:
            break
        chain.append(ancestor)
        seen.add(ancestor.account_id)
    return chain


def _change_state(
    cmd: ChangeAccountState,
    uow: AccountsUnitOfWork,
    transition: Callable[[Account, str, datetime], AccountStateChanged],
) -> Account:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _account(uow, replayed)
        account = _account(uow, cmd.account_id)
        uow.publish(transition(account, cmd.reason, uow.clock.now()))
        _remember(uow, cmd, account.account_id)
        uow.commit()
    return account
