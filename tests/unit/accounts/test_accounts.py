"""Billing accounts: creation rules, updates, hierarchy, closing, lists and history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.accounts.domain.events import (
    AccountCreated,
    AccountStateChanged,
    AccountUpdated,
    SubscriptionChanged,
    SubscriptionChangeKind,
)
from services.accounts.domain.model import (
    AccountRevision,
    AccountState,
    ChangeTiming,
    PaymentMode,
    SubscriptionState,
)
from services.accounts.service_layer import commands as cmd
from services.accounts.service_layer import handlers
from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.money import Money
from tests.unit.accounts import builders
from tests.unit.accounts.fakes import FakeDatabase, FakeUnitOfWork


def test_a_new_account_is_active_and_announced(uow: FakeUnitOfWork, db: FakeDatabase) -> None:
    customer = builders.customer(uow, reseller_id="acme", group_id="smb")
    account = builders.account(uow, customer.customer_id, tax_region="NL")

    assert account.state is AccountState.ACTIVE
    assert account.credit_limit == Money.of("500", "EUR")
    event = db.events[-1]
    assert isinstance(event, AccountCreated)
    assert event.account_id == account.account_id
    assert (event.currency_code, event.time_zone, event.bill_cycle_day) == (
        "EUR",
        "Europe/Amsterdam",
        1,
    )
    assert (event.reseller_id, event.group_id, event.tax_region) == ("acme", "smb", "NL")
    assert event.payment_mode == "POSTPAID"
    assert event.payload()["credit_limit"] == {"amount": "500", "currency": "EUR"}


@pytest.mark.parametrize(
    ("mode", "limit", "problem"),
    [
        (PaymentMode.POSTPAID, None, "is required for a postpaid account"),
        (PaymentMode.HYBRID, None, "is required for a hybrid account"),
        (PaymentMode.POSTPAID, Money.of("10", "USD"), "must be in the account's currency EUR"),
        (PaymentMode.POSTPAID, Money.of("-1", "EUR"), "must not be negative"),
        (PaymentMode.PREPAID, Money.of("10", "EUR"), "must not be set for a prepaid account"),
    ],
)
def test_credit_limit_must_fit_the_payment_mode(
    uow: FakeUnitOfWork, db: FakeDatabase, mode: PaymentMode, limit: Money | None, problem: str
) -> None:
    customer = builders.customer(uow)
    with pytest.raises(InvalidArgument) as refused:
        builders.account(uow, customer.customer_id, payment_mode=mode, credit_limit=limit)
    [violation] = refused.value.violations
    assert violation.field == "account.credit_limit"
    assert problem in violation.description
    assert db.state.accounts == {}


def test_prepaid_account_needs_no_credit_limit(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow, payment_mode=PaymentMode.PREPAID, credit_limit=None)
    assert account.credit_limit is None


def test_account_of_unknown_customer_is_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as missing:
        builders.account(uow, "cus_nobody")
    assert missing.value.reason == "CUSTOMER_NOT_FOUND"


def test_parent_must_exist(uow: FakeUnitOfWork) -> None:
    with pytest.raises(NotFound) as missing:
        builders.account(uow, parent_account_id="acc_nobody")
    assert missing.value.reason == "PARENT_ACCOUNT_NOT_FOUND"


def test_parent_must_belong_to_the_same_customer(uow: FakeUnitOfWork) -> None:
    other_customers_account = builders.account(uow)
    with pytest.raises(InvalidArgument) as refused:
        builders.account(uow, parent_account_id=other_customers_account.account_id)
    assert refused.value.violations[0].field == "account.parent_account_id"


def test_parent_must_not_be_closed(uow: FakeUnitOfWork) -> None:
    parent = builders.account(uow)
    handlers.close_account(cmd.CloseAccount(account_id=parent.account_id, reason="gone"), uow)
    with pytest.raises(FailedPrecondition) as refused:
        builders.account(uow, parent.customer_id, parent_account_id=parent.account_id)
    assert refused.value.reason == "PARENT_ACCOUNT_CLOSED"


def test_hierarchy_cannot_become_a_cycle(uow: FakeUnitOfWork) -> None:
    head = builders.account(uow)
    department = builders.account(uow, head.customer_id, parent_account_id=head.account_id)
    team = builders.account(uow, head.customer_id, parent_account_id=department.account_id)
    assert team.parent_account_id == department.account_id

    for new_parent in (team.account_id, head.account_id):
        with pytest.raises(InvalidArgument) as refused:
            handlers.update_account(
                cmd.UpdateAccount(
                    account_id=head.account_id,
                    revision=AccountRevision(
                        fields=frozenset({"parent_account_id"}), parent_account_id=new_parent
                    ),
                ),
                uow,
            )
        assert "own ancestor" in refused.value.violations[0].description


def test_update_applies_masked_fields_and_checks_the_result(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    account = builders.account(uow)
    clock.advance(timedelta(hours=1))

    updated = handlers.update_account(
        cmd.UpdateAccount(
            account_id=account.account_id,
            revision=AccountRevision(
                fields=frozenset({"bill_cycle_day", "time_zone", "credit_limit"}),
                bill_cycle_day=15,
                time_zone="America/New_York",
                credit_limit=Money.of("750.25", "EUR"),
            ),
        ),
        uow,
    )

    assert (updated.bill_cycle_day, updated.time_zone) == (15, "America/New_York")
    assert updated.credit_limit == Money.of("750.25", "EUR")
    assert updated.update_time == clock.now()
    event = db.events[-1]
    assert isinstance(event, AccountUpdated)
    assert event.changed_fields == ("bill_cycle_day", "credit_limit", "time_zone")

    with pytest.raises(InvalidArgument) as refused:  # postpaid without a limit
        handlers.update_account(
            cmd.UpdateAccount(
                account_id=account.account_id,
                revision=AccountRevision(fields=frozenset({"credit_limit"}), credit_limit=None),
            ),
            uow,
        )
    assert refused.value.violations[0].field == "account.credit_limit"


def test_switching_to_prepaid_requires_dropping_the_limit(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    both = frozenset({"payment_mode", "credit_limit"})
    updated = handlers.update_account(
        cmd.UpdateAccount(
            account_id=account.account_id,
            revision=AccountRevision(fields=both, payment_mode=PaymentMode.PREPAID),
        ),
        uow,
    )
    assert (updated.payment_mode, updated.credit_limit) == (PaymentMode.PREPAID, None)


def test_a_closed_account_cannot_be_updated(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    handlers.close_account(cmd.CloseAccount(account_id=account.account_id, reason="gone"), uow)
    with pytest.raises(FailedPrecondition) as refused:
        handlers.update_account(
            cmd.UpdateAccount(
                account_id=account.account_id,
                revision=AccountRevision(fields=frozenset({"display_name"}), display_name="x"),
            ),
            uow,
        )
    assert refused.value.reason == "ACCOUNT_CLOSED"


def test_closing_cancels_the_active_subscriptions_at_once(
    uow: FakeUnitOfWork, db: FakeDatabase, clock: ManualClock
) -> None:
    account = builders.account(uow)
    running = builders.subscription(uow, account.account_id, "basic").subscription
    scheduled = builders.subscription(uow, account.account_id, "pro").subscription
    handlers.cancel_subscription(
        cmd.CancelSubscription(
            subscription_id=scheduled.subscription_id, timing=ChangeTiming.END_OF_CYCLE
        ),
        uow,
    )
    ended = builders.subscription(uow, account.account_id, "old").subscription
    handlers.cancel_subscription(
        cmd.CancelSubscription(
            subscription_id=ended.subscription_id, timing=ChangeTiming.IMMEDIATE
        ),
        uow,
    )
    clock.advance(timedelta(days=2))
    before = len(db.events)

    closed = handlers.close_account(
        cmd.CloseAccount(account_id=account.account_id, reason="customer left"), uow
    )

    assert closed.state is AccountState.CLOSED
    new_events = db.events[before:]
    assert isinstance(new_events[0], AccountStateChanged)
    assert new_events[0].to_state == "CLOSED"
    cancelled = [e for e in new_events if isinstance(e, SubscriptionChanged)]
    assert {e.subscription_id for e in cancelled} == {
        running.subscription_id,
        scheduled.subscription_id,
    }
    assert all(e.kind is SubscriptionChangeKind.CANCELLED for e in cancelled)
    assert all(e.effective_time == clock.now() for e in cancelled)
    for sub_id in (running.subscription_id, scheduled.subscription_id):
        sub = db.state.subscriptions[sub_id]
        assert sub.state is SubscriptionState.CANCELLED
        assert sub.cancel_time == clock.now()
    ended_at = db.state.subscriptions[ended.subscription_id].cancel_time
    assert ended_at is not None
    assert ended_at < clock.now()


def test_a_repeated_state_change_is_answered_not_refused(
    uow: FakeUnitOfWork, db: FakeDatabase
) -> None:
    account = builders.account(uow)
    suspend = cmd.SuspendAccount(
        account_id=account.account_id, reason="overdue", request_id="r1", fingerprint="f"
    )
    assert handlers.suspend_account(suspend, uow).state is AccountState.SUSPENDED
    assert handlers.suspend_account(suspend, uow).state is AccountState.SUSPENDED
    assert len(db.events_of(AccountStateChanged)) == 1

    with pytest.raises(FailedPrecondition) as refused:  # a new request: a real repeat
        handlers.suspend_account(
            cmd.SuspendAccount(account_id=account.account_id, reason="overdue"), uow
        )
    assert refused.value.reason == "INVALID_STATE_TRANSITION"


def test_restoring_a_closed_account_is_refused(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    handlers.close_account(cmd.CloseAccount(account_id=account.account_id, reason="gone"), uow)
    with pytest.raises(FailedPrecondition) as refused:
        handlers.restore_account(
            cmd.RestoreAccount(account_id=account.account_id, reason="oops"), uow
        )
    assert refused.value.reason == "INVALID_STATE_TRANSITION"
    assert refused.value.metadata["from_state"] == "CLOSED"


def test_accounts_list_by_customer_state_reseller_and_group(uow: FakeUnitOfWork) -> None:
    acme = builders.customer(uow, reseller_id="acme", group_id="smb")
    other = builders.customer(uow, reseller_id="other", group_id="smb")
    a1 = builders.account(uow, acme.customer_id)
    a2 = builders.account(uow, acme.customer_id)
    b1 = builders.account(uow, other.customer_id)
    handlers.suspend_account(cmd.SuspendAccount(account_id=a2.account_id, reason="x"), uow)

    def ids(**filters: object) -> set[str]:
        page = handlers.list_accounts(cmd.ListAccounts(limit=100, **filters), uow)  # type: ignore[arg-type]
        return {a.account_id for a in page.items}

    assert ids(customer_id=acme.customer_id) == {a1.account_id, a2.account_id}
    assert ids(state=AccountState.SUSPENDED) == {a2.account_id}
    assert ids(reseller_id="acme") == {a1.account_id, a2.account_id}
    assert ids(group_id="smb") == {a1.account_id, a2.account_id, b1.account_id}
    assert ids(reseller_id="acme", state=AccountState.ACTIVE) == {a1.account_id}


def test_state_history_pages_oldest_first(uow: FakeUnitOfWork) -> None:
    account = builders.account(uow)
    for _ in range(3):
        handlers.suspend_account(cmd.SuspendAccount(account_id=account.account_id, reason="s"), uow)
        handlers.restore_account(cmd.RestoreAccount(account_id=account.account_id, reason="r"), uow)

    first = handlers.list_account_state_history(
        cmd.ListAccountStateHistory(account_id=account.account_id, limit=4), uow
    )
    rest = handlers.list_account_state_history(
        cmd.ListAccountStateHistory(
            account_id=account.account_id, limit=4, after_sequence=int(first.next_after)
        ),
        uow,
    )

    assert [c.sequence for c in first.items] == [1, 2, 3, 4]
    assert [c.sequence for c in rest.items] == [5, 6]
    assert rest.next_after == ""
    assert [c.to_state for c in rest.items] == [AccountState.SUSPENDED, AccountState.ACTIVE]
