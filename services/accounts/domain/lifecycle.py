"""The lifecycle of a billing account: its states and the transitions between them.

    ACTIVE ----suspend----> SUSPENDED ----bar----> BARRED
      |  ^---restore----------'   ^                  |
      |  '---------------restore--+------------------'
      '----------------------bar--'
    any state but CLOSED ----close----> CLOSED (final)

A transition not in the table, including one to the state the account is
already in, is refused with ``INVALID_STATE_TRANSITION`` naming both states:
callers (dunning, self-care, operators) must learn that their picture of the
account was stale rather than believe they changed something.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from services.common.errors import FailedPrecondition


class AccountState(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"  # outgoing service stopped (typically by dunning)
    BARRED = "BARRED"  # all service stopped
    CLOSED = "CLOSED"  # final


ALLOWED_TRANSITIONS: Final[Mapping[AccountState, frozenset[AccountState]]] = {
    AccountState.ACTIVE: frozenset(
        {AccountState.SUSPENDED, AccountState.BARRED, AccountState.CLOSED}
    ),
    AccountState.SUSPENDED: frozenset(
        {AccountState.ACTIVE, AccountState.BARRED, AccountState.CLOSED}
    ),
    AccountState.BARRED: frozenset({AccountState.ACTIVE, AccountState.CLOSED}),
    AccountState.CLOSED: frozenset(),
}


def can_transition(current: AccountState, target: AccountState) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(account_id: str, current: AccountState, target: AccountState) -> None:
    """Refuse a transition the lifecycle does not allow."""
    if can_transition(current, target):
        return
    if current is target:
        why = f"account {account_id} is already {current.value}"
    elif current is AccountState.CLOSED:
        why = f"account {account_id} is CLOSED, which is final"
    else:
        why = f"account {account_id} cannot go from {current.value} to {target.value}"
    raise FailedPrecondition(
        f"{why} (invalid state transition {current.value} -> {target.value})",
        reason="INVALID_STATE_TRANSITION",
        metadata={
            "account_id": account_id,
            "from_state": current.value,
            "to_state": target.value,
        },
    )
