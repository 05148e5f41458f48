"""Subscriptions: plans, add-ons, cancellation, end-of-cycle changes and account states."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.accounts.domain.events import SubscriptionChanged, SubscriptionChangeKind
from services.accounts.domain.model import AccountState, ChangeTiming, SubscriptionState
from services.accounts.service_layer import commands as cmd
from services.accounts.service_layer import handlers
from services.accounts.service_layer.commands import SubscriptionView
from services.common.clock import ManualClock
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from tests.unit.accounts import builders
from tests.unit.accounts.fakes import FakeDatabase, FakeUnitOfWork

IMMEDIATE, END_OF_CYCLE = ChangeTiming.IMMEDIATE, ChangeTiming.END_OF_CYCLE


def changes(db: FakeDatabase) -> list[SubscriptionChanged]:
    return [e for e in db.events if isinstance(e, SubscriptionChanged)]


def change_plan(
    uow: FakeUnitOfWork, subscription_id: str, plan: str, timing: ChangeTiming, **kw: str
) -> SubscriptionView:
    command = cmd.ChangePlan(subscription_id=subscription_id, plan_code=plan, timing=timing, **kw)
    return handlers.change_plan(command, uow, catalog=builders.CATALOG)


def cancel(uow: FakeUnitOfWork, subscription_id: str, timing: ChangeTiming) -> SubscriptionView:
    command = cmd.CancelSubscription(subscription_id=subscription_id, timing=timing)
    return handlers.cancel_subscription(command, uow)


def add_add_on(uow: FakeUnitOfWork, subscription_id: str, code: str, quantity: int = 1) -> None:
    command = cmd.AddAddOn(subscription_id=subscription_id, add_on_code=code, quantity=quantity)
    handlers.add_add_on(command, uow, catalog=builders.CATALOG)


def remove_add_on(uow: FakeUnitOfWork, subscription_id: str, code: str) -> None:
    command = cmd.RemoveAddOn(subscription_id=subscription_id, add_on_code=code)
    handlers.remove_add_on(command, uow)


def get(uow: FakeUnitOfWork, subscription_id: str) -> SubscriptionView:
    return handlers.get_subscription(cmd.GetSubscription(subscription_id), uow)


def test_a_subscription_starts_now_in_the_accounts_current_cycle(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    account = builders.account(uow, bill_cycle_day=10)

    view = builders.subscription(uow, account.account_id, "basic")

    assert view.subscription.state is SubscriptionState.ACTIVE
    assert view.subscription.start_time == clock.now()
    assert view.current_period is not None
    assert view.current_period.start == datetime(2026, 1, 9, 23, tzinfo=UTC)  # 10 Jan CET
    assert view.current_period.end == datetime(2026, 2, 9, 23, tzinfo=UTC)
    [created] = changes(db)
    assert created.kind is SubscriptionChangeKind.CREATED
    assert (created.plan_code, created.currency_code) == ("basic", "EUR")
    assert created.customer_id == account.customer_id
    assert db.guarded == [account.account_id]  # a concurrent state change would abort this


def test_immediate_plan_change_is_effective_now_with_its_cycle(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id, "basic").subscription
    clock.advance(timedelta(days=3))

    view = change_plan(uow, sub.subscription_id, "pro", IMMEDIATE)

    assert view.subscription.plan_code == "pro"
    event = changes(db)[-1]
    assert event.kind is SubscriptionChangeKind.PLAN_CHANGED
    assert (event.old_plan_code, event.new_plan_code) == ("basic", "pro")
    assert event.effective_time == clock.now()
    # Invoicing prorates from these: 1 Jan to 1 Feb, Amsterdam midnight.
    assert event.period_start == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert event.period_end == datetime(2026, 1, 31, 23, tzinfo=UTC)


def test_end_of_cycle_change_waits_for_the_local_cycle_boundary(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    # 31 Jan 22:30 UTC is 23:30 in Amsterdam: the cycle (day 1) ends in 30 minutes,
    # not at midnight UTC.
    clock.set(datetime(2026, 1, 31, 22, 30, tzinfo=UTC))
    account = builders.account(uow, bill_cycle_day=1)
    sub = builders.subscription(uow, account.account_id, "basic").subscription
    boundary = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)

    view = change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)

    assert view.subscription.plan_code == "basic"
    pending = view.subscription.pending_plan_change
    assert pending is not None
    assert (pending.plan_code, pending.effective_time) == ("pro", boundary)
    scheduled = changes(db)[-1]
    assert scheduled.kind is SubscriptionChangeKind.PLAN_CHANGE_SCHEDULED
    assert (scheduled.plan_code, scheduled.new_plan_code) == ("basic", "pro")
    assert scheduled.effective_time == boundary

    clock.set(boundary - timedelta(microseconds=1))
    assert handlers.apply_due_subscription_changes(uow) == 0
    assert get(uow, sub.subscription_id).subscription.plan_code == "basic"

    clock.set(boundary + timedelta(days=3))  # the scheduler runs late
    assert handlers.apply_due_subscription_changes(uow) == 1

    applied = changes(db)[-1]
    assert applied.kind is SubscriptionChangeKind.PLAN_CHANGED
    assert (applied.old_plan_code, applied.new_plan_code) == ("basic", "pro")
    assert applied.effective_time == boundary  # effective when scheduled, not when run
    assert applied.period_start == boundary
    assert applied.period_end == datetime(2026, 2, 28, 23, tzinfo=UTC)
    current = get(uow, sub.subscription_id).subscription
    assert (current.plan_code, current.pending_plan_change) == ("pro", None)
    assert handlers.apply_due_subscription_changes(uow) == 0  # applied exactly once


def test_end_of_cycle_boundary_across_daylight_saving(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 3, 20, 12, tzinfo=UTC))  # winter time; summer starts 29 Mar
    account = builders.account(uow, bill_cycle_day=1, time_zone="Europe/Amsterdam")
    sub = builders.subscription(uow, account.account_id).subscription

    view = change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)

    pending = view.subscription.pending_plan_change
    assert pending is not None
    assert pending.effective_time == datetime(2026, 3, 31, 22, tzinfo=UTC)  # 1 Apr 00:00 CEST


def test_a_read_applies_a_due_change_and_publishes_it(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id, "basic").subscription
    change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)
    clock.advance(timedelta(days=20))

    assert get(uow, sub.subscription_id).subscription.plan_code == "pro"
    assert changes(db)[-1].kind is SubscriptionChangeKind.PLAN_CHANGED
    page = handlers.list_subscriptions(cmd.ListSubscriptions(limit=10), uow)
    assert [v.subscription.plan_code for v in page.items] == ["pro"]
    assert len([e for e in changes(db) if e.kind is SubscriptionChangeKind.PLAN_CHANGED]) == 1


def test_a_later_end_of_cycle_change_replaces_the_pending_one(uow: FakeUnitOfWork) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)
    view = change_plan(uow, sub.subscription_id, "max", END_OF_CYCLE)
    pending = view.subscription.pending_plan_change
    assert pending is not None
    assert pending.plan_code == "max"


def test_an_immediate_change_supersedes_a_pending_one(uow: FakeUnitOfWork) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)
    view = change_plan(uow, sub.subscription_id, "max", IMMEDIATE)
    assert (view.subscription.plan_code, view.subscription.pending_plan_change) == ("max", None)


def test_changing_to_the_current_plan_is_refused(uow: FakeUnitOfWork) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id, "basic").subscription
    with pytest.raises(FailedPrecondition) as refused:
        change_plan(uow, sub.subscription_id, "basic", IMMEDIATE)
    assert refused.value.reason == "PLAN_UNCHANGED"


def test_end_of_cycle_cancellation_ends_at_the_boundary(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)
    boundary = datetime(2026, 1, 31, 23, tzinfo=UTC)

    view = cancel(uow, sub.subscription_id, END_OF_CYCLE)

    assert view.subscription.state is SubscriptionState.ACTIVE
    assert view.subscription.cancel_at_period_end
    assert view.subscription.cancel_time == boundary
    assert view.subscription.pending_plan_change is None  # nothing to change to
    assert changes(db)[-1].kind is SubscriptionChangeKind.CANCEL_SCHEDULED
    with pytest.raises(FailedPrecondition) as refused:
        change_plan(uow, sub.subscription_id, "max", IMMEDIATE)
    assert refused.value.reason == "CANCELLATION_SCHEDULED"
    with pytest.raises(FailedPrecondition) as again:
        cancel(uow, sub.subscription_id, END_OF_CYCLE)
    assert again.value.reason == "CANCELLATION_SCHEDULED"

    clock.set(boundary)
    assert handlers.apply_due_subscription_changes(uow) == 1
    ended = get(uow, sub.subscription_id)
    assert ended.subscription.state is SubscriptionState.CANCELLED
    assert ended.current_period is None
    last = changes(db)[-1]
    assert (last.kind, last.effective_time) == (SubscriptionChangeKind.CANCELLED, boundary)


def test_immediate_cancellation_ends_now(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    cancel(uow, sub.subscription_id, END_OF_CYCLE)
    view = cancel(uow, sub.subscription_id, IMMEDIATE)  # allowed after scheduling
    assert view.subscription.state is SubscriptionState.CANCELLED
    assert view.subscription.cancel_time == clock.now()
    assert not view.subscription.cancel_at_period_end


def test_a_cancelled_subscription_cannot_change(uow: FakeUnitOfWork) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    cancel(uow, sub.subscription_id, IMMEDIATE)
    attempts: list[Callable[[], object]] = [
        lambda: change_plan(uow, sub.subscription_id, "pro", IMMEDIATE),
        lambda: add_add_on(uow, sub.subscription_id, "extra-data"),
        lambda: remove_add_on(uow, sub.subscription_id, "extra-data"),
        lambda: cancel(uow, sub.subscription_id, IMMEDIATE),
    ]
    for attempt in attempts:
        with pytest.raises(FailedPrecondition) as refused:
            attempt()
        assert refused.value.reason == "SUBSCRIPTION_CANCELLED"


def test_add_ons_are_added_once_and_removed(uow: FakeUnitOfWork, db: FakeDatabase) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id).subscription
    add_add_on(uow, sub.subscription_id, "extra-data", 3)
    add_add_on(uow, sub.subscription_id, "roaming")

    with pytest.raises(AlreadyExists) as duplicate:
        add_add_on(uow, sub.subscription_id, "roaming")
    assert duplicate.value.reason == "ADD_ON_ALREADY_ACTIVE"

    remove_add_on(uow, sub.subscription_id, "extra-data")
    with pytest.raises(NotFound) as missing:
        remove_add_on(uow, sub.subscription_id, "extra-data")
    assert missing.value.reason == "ADD_ON_NOT_FOUND"

    view = get(uow, sub.subscription_id)
    assert [(a.add_on_code, a.quantity) for a in view.subscription.add_ons] == [("roaming", 1)]
    kinds = [(e.kind, e.add_on_code, e.add_on_quantity) for e in changes(db)[1:]]
    assert kinds == [
        (SubscriptionChangeKind.ADDON_ADDED, "extra-data", 3),
        (SubscriptionChangeKind.ADDON_ADDED, "roaming", 1),
        (SubscriptionChangeKind.ADDON_REMOVED, "extra-data", 3),
    ]


@pytest.mark.parametrize("state", [AccountState.SUSPENDED, AccountState.BARRED])
def test_subscriptions_cannot_grow_on_an_account_that_is_not_active(
    uow: FakeUnitOfWork, state: AccountState
) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id).subscription
    add_add_on(uow, sub.subscription_id, "roaming")
    if state is AccountState.SUSPENDED:
        handlers.suspend_account(cmd.SuspendAccount(account_id=account.account_id, reason="x"), uow)
    else:
        handlers.bar_account(cmd.BarAccount(account_id=account.account_id, reason="x"), uow)

    growth: list[Callable[[], object]] = [
        lambda: builders.subscription(uow, account.account_id),
        lambda: change_plan(uow, sub.subscription_id, "pro", IMMEDIATE),
        lambda: add_add_on(uow, sub.subscription_id, "extra-data"),
    ]
    for attempt in growth:
        with pytest.raises(FailedPrecondition) as refused:
            attempt()
        assert refused.value.reason == "ACCOUNT_NOT_ACTIVE"
        assert refused.value.metadata["state"] == state.value


def test_a_suspended_account_may_still_shrink_its_subscriptions(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id).subscription
    add_add_on(uow, sub.subscription_id, "roaming")
    handlers.suspend_account(cmd.SuspendAccount(account_id=account.account_id, reason="x"), uow)

    remove_add_on(uow, sub.subscription_id, "roaming")
    view = cancel(uow, sub.subscription_id, IMMEDIATE)

    assert view.subscription.state is SubscriptionState.CANCELLED


def test_a_barred_account_may_not_shrink_its_subscriptions_either(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id).subscription
    add_add_on(uow, sub.subscription_id, "roaming")
    handlers.bar_account(cmd.BarAccount(account_id=account.account_id, reason="fraud"), uow)

    for attempt in (
        lambda: remove_add_on(uow, sub.subscription_id, "roaming"),
        lambda: cancel(uow, sub.subscription_id, IMMEDIATE),
    ):
        with pytest.raises(FailedPrecondition) as refused:
            attempt()
        assert refused.value.reason == "ACCOUNT_NOT_ACTIVE"


def test_a_closed_account_takes_no_subscription(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    handlers.close_account(cmd.CloseAccount(account_id=account.account_id, reason="gone"), uow)
    with pytest.raises(FailedPrecondition) as refused:
        builders.subscription(uow, account.account_id)
    assert refused.value.reason == "ACCOUNT_NOT_ACTIVE"


def test_a_due_change_is_applied_even_on_a_suspended_account(
    uow: FakeUnitOfWork, clock: ManualClock
) -> None:
    account = builders.account(uow)
    sub = builders.subscription(uow, account.account_id).subscription
    change_plan(uow, sub.subscription_id, "pro", END_OF_CYCLE)  # agreed while active
    handlers.suspend_account(cmd.SuspendAccount(account_id=account.account_id, reason="x"), uow)
    clock.advance(timedelta(days=30))
    assert handlers.apply_due_subscription_changes(uow) == 1
    assert get(uow, sub.subscription_id).subscription.plan_code == "pro"


class OnlyBasic:
    """A catalog that knows one plan and one add-on, as rating's will."""

    def has_plan(self, plan_code: str) -> bool:
        return plan_code == "basic"

    def has_add_on(self, add_on_code: str) -> bool:
        return add_on_code == "roaming"


def test_the_catalog_port_refuses_unknown_codes(uow: FakeUnitOfWork, db: FakeDatabase) -> None:
    account = builders.account(uow)
    catalog = OnlyBasic()
    view = handlers.create_subscription(
        cmd.CreateSubscription(account_id=account.account_id, plan_code="basic"),
        uow,
        catalog=catalog,
    )
    events_before = len(db.events)
    with pytest.raises(InvalidArgument) as unknown_plan:
        handlers.create_subscription(
            cmd.CreateSubscription(account_id=account.account_id, plan_code="gold"),
            uow,
            catalog=catalog,
        )
    assert unknown_plan.value.violations[0].field == "subscription.plan_code"
    assert unknown_plan.value.reason == "UNKNOWN_PLAN"
    with pytest.raises(InvalidArgument) as unknown_change:
        handlers.change_plan(
            cmd.ChangePlan(
                subscription_id=view.subscription.subscription_id,
                plan_code="gold",
                timing=IMMEDIATE,
            ),
            uow,
            catalog=catalog,
        )
    assert unknown_change.value.violations[0].field == "plan_code"
    assert unknown_change.value.reason == "UNKNOWN_PLAN"
    with pytest.raises(InvalidArgument) as unknown_add_on:
        handlers.add_add_on(
            cmd.AddAddOn(subscription_id=view.subscription.subscription_id, add_on_code="tv"),
            uow,
            catalog=catalog,
        )
    assert unknown_add_on.value.violations[0].field == "add_on_code"
    assert unknown_add_on.value.reason == "UNKNOWN_ADD_ON"
    assert len(db.events) == events_before


def test_a_repeated_plan_change_is_applied_once(uow: FakeUnitOfWork, db: FakeDatabase) -> None:
    sub = builders.subscription(uow, builders.account(uow).account_id, "basic").subscription
    for _ in range(3):
        view = change_plan(
            uow, sub.subscription_id, "pro", IMMEDIATE, request_id="r-9", fingerprint="fp"
        )
        assert view.subscription.plan_code == "pro"
    assert len(changes(db)) == 2  # CREATED and one PLAN_CHANGED


def test_unknown_subscription_is_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as missing:
        get(uow, "sub_nobody")
    assert missing.value.reason == "SUBSCRIPTION_NOT_FOUND"
