"""The account lifecycle: every transition between the four states, allowed or refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.accounts.domain.events import AccountStateChanged
from services.accounts.domain.lifecycle import AccountState
from services.accounts.domain.model import Account, PaymentMode
from services.common.errors import FailedPrecondition

ACTIVE, SUSPENDED, BARRED, CLOSED = (
    AccountState.ACTIVE,
    AccountState.SUSPENDED,
    AccountState.BARRED,
    AccountState.CLOSED,
)
# The specification, written out rather than derived from the code's table.
ALLOWED = {
    (ACTIVE, SUSPENDED),
    (ACTIVE, BARRED),
    (SUSPENDED, BARRED),
    (SUSPENDED, ACTIVE),
    (BARRED, ACTIVE),
    (ACTIVE, CLOSED),
    (SUSPENDED, CLOSED),
    (BARRED, CLOSED),
}
ALL_PAIRS = [(a, b) for a in AccountState for b in AccountState]
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def account_in(state: AccountState) -> Account:
    return Account(
        account_id="acc_test",
        customer_id="cus_test",
        display_name="",
        currency_code="EUR",
        time_zone="Europe/Amsterdam",
        bill_cycle_day=1,
        tax_region="NL",
        payment_terms_days=14,
        payment_mode=PaymentMode.PREPAID,
        credit_limit=None,
        parent_account_id=None,
        state=state,
        state_reason="set up by the test",
        state_change_time=T0,
        create_time=T0,
        update_time=T0,
    )


def move(account: Account, target: AccountState) -> AccountStateChanged:
    method = {
        ACTIVE: account.restore,
        SUSPENDED: account.suspend,
        BARRED: account.bar,
        CLOSED: account.close,
    }[target]
    return method("because the test says so", T1)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition_changes_state_and_records_history(
    current: AccountState, target: AccountState
) -> None:
    account = account_in(current)

    event = move(account, target)

    assert account.state is target
    assert account.state_reason == "because the test says so"
    assert account.state_change_time == T1
    [entry] = account.state_changes
    assert (entry.from_state, entry.to_state, entry.sequence) == (current, target, 1)
    assert entry.reason == "because the test says so"
    assert entry.change_time == T1
    assert (event.from_state, event.to_state) == (current.value, target.value)
    assert event.account_id == "acc_test"
    assert event.customer_id == "cus_test"


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in ALLOWED], ids=str)
def test_refused_transition_names_both_states_and_changes_nothing(
    current: AccountState, target: AccountState
) -> None:
    account = account_in(current)

    with pytest.raises(FailedPrecondition) as refused:
        move(account, target)

    assert refused.value.reason == "INVALID_STATE_TRANSITION"
    assert current.value in refused.value.message
    assert target.value in refused.value.message
    assert refused.value.metadata == {
        "account_id": "acc_test",
        "from_state": current.value,
        "to_state": target.value,
    }
    assert account.state is current
    assert account.state_changes == []


def test_same_state_transition_is_refused() -> None:
    with pytest.raises(FailedPrecondition, match="already SUSPENDED"):
        account_in(SUSPENDED).suspend("again", T1)


def test_closed_is_final() -> None:
    for target in AccountState:
        with pytest.raises(FailedPrecondition) as refused:
            move(account_in(CLOSED), target)
        assert refused.value.reason == "INVALID_STATE_TRANSITION"


def test_history_numbers_entries_in_order() -> None:
    account = account_in(ACTIVE)
    account.suspend("overdue", T1)
    account.restore("paid", T1)
    account.bar("fraud", T1)
    account.close("terminated", T1)

    assert [(c.sequence, c.from_state, c.to_state) for c in account.state_changes] == [
        (1, ACTIVE, SUSPENDED),
        (2, SUSPENDED, ACTIVE),
        (3, ACTIVE, BARRED),
        (4, BARRED, CLOSED),
    ]
