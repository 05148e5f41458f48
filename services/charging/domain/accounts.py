"""Charging's view of an account: billing mode, credit line and state (CHG-6, CHG-11).

The accounts service owns accounts; charging keeps what it needs to authorise
usage in real time. The policy is set by an admin call (so charging works
standalone); the state follows the accounts service's ``AccountStateChanged``
events, ordered by the time they happened so a late redelivery cannot undo a
newer change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.charging.domain.instants import to_ms
from services.charging.domain.units import MAX_BALANCE, money_unit, unscaled_money
from services.common.money import Money


class BillingMode(StrEnum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"
    HYBRID = "hybrid"


class AccountState(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    BARRED = "barred"
    CLOSED = "closed"


class FinalUnitAction(StrEnum):
    TERMINATE = "terminate"
    REDIRECT = "redirect"
    RESTRICT_ACCESS = "restrict"


# Words the accounts service (or an operator) may use for a state, mapped to ours.
_STATE_WORDS: dict[str, AccountState] = {
    "active": AccountState.ACTIVE,
    "activated": AccountState.ACTIVE,
    "reactivated": AccountState.ACTIVE,
    "open": AccountState.ACTIVE,
    "suspended": AccountState.SUSPENDED,
    "barred": AccountState.BARRED,
    "blocked": AccountState.BARRED,
    "closed": AccountState.CLOSED,
    "terminated": AccountState.CLOSED,
    "deleted": AccountState.CLOSED,
}


def parse_state(word: str) -> AccountState | None:
    """Our state for a word of the accounts service, or None for states charging ignores."""
    return _STATE_WORDS.get(word.strip().lower())


def main_bucket_id(currency: str) -> str:
    """The id of an account's main money bucket of ``currency`` (the credit line)."""
    return f"main-{currency}"


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """How an account is charged. Amounts are scaled integers of ``currency``."""

    account_id: str
    mode: BillingMode
    currency: str
    credit_limit: int = 0
    low_balance: int | None = None
    final_unit_action: FinalUnitAction = FinalUnitAction.TERMINATE
    redirect_address: str = ""
    restriction_filter_id: str = ""

    def __post_init__(self) -> None:
        money_unit(self.currency)  # validates the currency
        if not 0 <= self.credit_limit <= MAX_BALANCE:
            raise ValueError("credit limit out of range")
        if self.mode is BillingMode.PREPAID and self.credit_limit:
            raise ValueError("a prepaid account has no credit limit")

    @property
    def has_credit_line(self) -> bool:
        return self.mode is not BillingMode.PREPAID

    @property
    def credit_floor(self) -> int:
        """How far below zero the main money bucket may go."""
        return -self.credit_limit if self.has_credit_line else 0

    @property
    def credit_thresholds(self) -> tuple[int, int]:
        """Credit used (scaled) at which 80% and 100% of the limit are reached."""
        return credit_threshold(self.credit_limit, 80), self.credit_limit

    def money(self, amount: int) -> Money:
        return unscaled_money(amount, self.currency)


def credit_threshold(limit: int, percent: int) -> int:
    """The smallest used amount that is at least ``percent`` of ``limit`` (exact integers)."""
    return -((-limit * percent) // 100)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an account may not use a service now."""

    reason: str


def admission(state: AccountState, *, free_service: bool) -> Refusal | None:
    """CHG-11: suspended and barred accounts keep free (emergency) services; closed ones nothing."""
    if state is AccountState.ACTIVE:
        return None
    if state is AccountState.CLOSED:
        return Refusal("ACCOUNT_CLOSED")
    if free_service:
        return None
    return Refusal("ACCOUNT_SUSPENDED" if state is AccountState.SUSPENDED else "ACCOUNT_BARRED")


@dataclass(frozen=True, slots=True)
class StateChange:
    """A state heard from the accounts service; ``at`` orders changes."""

    account_id: str
    state: AccountState
    at: datetime
    reason: str = ""

    @property
    def version(self) -> int:
        """Milliseconds since the epoch: later changes win."""
        return to_ms(self.at)
