"""Subscription use cases: start, read, list, change plan, add and remove add-ons, cancel,
and the scheduled changes (END_OF_CYCLE plan changes and cancellations) applied when
due, by ``apply_due_subscription_changes`` or by any handler that loads a
subscription on which one has fallen due."""

from __future__ import annotations

import logging
from datetime import datetime

from services.accounts.domain.model import Account, Subscription
from services.accounts.service_layer.commands import (
    AddAddOn,
    CancelSubscription,
    ChangePlan,
    Command,
    CreateSubscription,
    GetSubscription,
    ListSubscriptions,
    Page,
    RemoveAddOn,
    SubscriptionView,
)
from services.accounts.service_layer.handler_support import (
    _account,
    _page,
    _remember,
    _replayed,
    _retry_once_if_aborted,
    _subscription,
)
from services.accounts.service_layer.plan_catalog import PlanCatalog
from services.accounts.service_layer.unit_of_work import AccountsUnitOfWork
from services.common.errors import Aborted, AlreadyExists, FieldViolation, InvalidArgument
from services.common.ids import new_id

log = logging.getLogger(__name__)


def create_subscription(
    cmd: CreateSubscription, uow: AccountsUnitOfWork, *, catalog: PlanCatalog
) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_plan(cmd.plan_code):
            raise _unknown_plan("subscription.plan_code")
        account = _account(uow, cmd.account_id)
        now = uow.clock.now()
        taken = uow.subscriptions.service_id_owners(cmd.service_ids)
        if taken:
            key, owner = sorted(taken.items())[0]
            raise AlreadyExists(
                f"service identifier {key} already belongs to subscription {owner}",
                reason="SERVICE_ID_TAKEN",
                metadata={"service_id": key, "subscription_id": owner},
            )
        subscription, created = Subscription.start(
            subscription_id=new_id("sub"),
            account=account,
            plan_code=cmd.plan_code,
            now=now,
            start_time=cmd.start_time,
            service_ids=cmd.service_ids,
        )
        uow.subscriptions.add(subscription)
        uow.subscriptions.claim_service_ids(subscription)
        uow.accounts.guard(account)
        uow.publish(created)
        _remember(uow, cmd, subscription.subscription_id)
        uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))


def _unknown_plan(field: str) -> InvalidArgument:
    return InvalidArgument(
        FieldViolation(field, "is not a plan on sale in the catalog"), reason="UNKNOWN_PLAN"
    )


def get_subscription(query: GetSubscription, uow: AccountsUnitOfWork) -> SubscriptionView:
    def read() -> SubscriptionView:
        with uow:
            return _subscription_view(uow, query.subscription_id, commit_due=True)

    return _retry_once_if_aborted(read)


def list_subscriptions(query: ListSubscriptions, uow: AccountsUnitOfWork) -> Page[SubscriptionView]:
    def read() -> Page[SubscriptionView]:
        with uow:
            found = uow.subscriptions.list(
                account_id=query.account_id,
                state=query.state,
                after=query.after,
                limit=query.limit + 1,
            )
            page = _page(found, query.limit, lambda s: s.subscription_id)
            now = uow.clock.now()
            views = []
            applied = False
            for subscription in page.items:
                account = _account(uow, subscription.account_id)
                applied |= _apply_due(uow, subscription, account, now)
                views.append(
                    SubscriptionView(subscription, subscription.current_period(account, now))
                )
            if applied:
                uow.commit()
            return Page(views, page.next_after)

    return _retry_once_if_aborted(read)


def change_plan(
    cmd: ChangePlan, uow: AccountsUnitOfWork, *, catalog: PlanCatalog
) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_plan(cmd.plan_code):
            raise _unknown_plan("plan_code")
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.change_plan(account, cmd.plan_code, cmd.timing, now))
        return _finish_change(uow, cmd, subscription, account, now)


def add_add_on(cmd: AddAddOn, uow: AccountsUnitOfWork, *, catalog: PlanCatalog) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        if not catalog.has_add_on(cmd.add_on_code):
            raise InvalidArgument(
                FieldViolation("add_on_code", "is not an add-on of the catalog"),
                reason="UNKNOWN_ADD_ON",
            )
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.add_add_on(account, cmd.add_on_code, cmd.quantity, now))
        return _finish_change(uow, cmd, subscription, account, now)


def remove_add_on(cmd: RemoveAddOn, uow: AccountsUnitOfWork) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.remove_add_on(account, cmd.add_on_code, now))
        return _finish_change(uow, cmd, subscription, account, now)


def cancel_subscription(cmd: CancelSubscription, uow: AccountsUnitOfWork) -> SubscriptionView:
    with uow:
        replayed = _replayed(uow, cmd)
        if replayed is not None:
            return _subscription_view(uow, replayed)
        subscription, account, now = _for_change(uow, cmd.subscription_id)
        uow.publish(subscription.cancel(account, cmd.timing, now))
        return _finish_change(uow, cmd, subscription, account, now)


def apply_due_subscription_changes(uow: AccountsUnitOfWork, *, limit: int = 100) -> int:
    """Apply scheduled plan changes and cancellations that have fallen due.

    One transaction per subscription (one aggregate per transaction); returns how
    many subscriptions changed. A subscription a concurrent call changed first is
    skipped: whoever won applied it, or the next run will.
    """
    with uow:
        due = list(uow.subscriptions.due_ids(uow.clock.now(), limit))
    applied = 0
    for subscription_id in due:
        try:
            with uow:
                subscription = uow.subscriptions.get(subscription_id)
                if subscription is None:
                    continue
                account = _account(uow, subscription.account_id)
                if _apply_due(uow, subscription, account, uow.clock.now()):
                    uow.commit()
                    applied += 1
        except Aborted:
            log.info("due change of %s applied concurrently; skipped", subscription_id)
    return applied


def _apply_due(
    uow: AccountsUnitOfWork, subscription: Subscription, account: Account, now: datetime
) -> bool:
    changes = subscription.apply_due_changes(account, now)
    for change in changes:
        uow.publish(change)
    return bool(changes)


def _subscription_view(
    uow: AccountsUnitOfWork, subscription_id: str, *, commit_due: bool = False
) -> SubscriptionView:
    """Load a subscription with its period; applies (and commits) due changes if asked."""
    subscription = _subscription(uow, subscription_id)
    account = _account(uow, subscription.account_id)
    now = uow.clock.now()
    if commit_due and _apply_due(uow, subscription, account, now):
        uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))


def _for_change(
    uow: AccountsUnitOfWork, subscription_id: str
) -> tuple[Subscription, Account, datetime]:
    """Load a subscription to change, first applying what fell due (in this transaction)."""
    subscription = _subscription(uow, subscription_id)
    account = _account(uow, subscription.account_id)
    now = uow.clock.now()
    _apply_due(uow, subscription, account, now)
    return subscription, account, now


def _finish_change(
    uow: AccountsUnitOfWork,
    cmd: Command,
    subscription: Subscription,
    account: Account,
    now: datetime,
) -> SubscriptionView:
    # The change depends on the account's state: fail if the account changes meanwhile.
    uow.accounts.guard(account)
    _remember(uow, cmd, subscription.subscription_id)
    uow.commit()
    return SubscriptionView(subscription, subscription.current_period(account, now))
