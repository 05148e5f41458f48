"""Discounts, promotions and referral rewards of the catalog.

A ``Discount`` takes a percentage or a fixed amount off a rated charge. It can
be limited in time (a validity window) and in count (``max_uses``: "the first
3 calls at half price"), per account for its whole life or per bill cycle
(``uses_per``). The engine does not keep counters: the caller passes how many
uses are left, and a count-limited discount without that input is not applied
(rating never gives money away on a guess). Each applied discount is reported
so the caller can count the use: one use per rated event it took money off.

Discounts are applied per rated event, in order (plan, then package, then
promotions the event names), each on what the previous ones left. A
percentage is rounded with the discount's rounding at the charge's precision;
a fixed amount is capped at what is left, so a charge never turns negative.
Invoice-level discounts use the same definitions; applying them to an invoice
total is the invoicing service's job.

A ``ReferralReward`` is what a customer earns for bringing a new customer:
loyalty points (or another unit) granted to a balance by charging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.common.money import Rounding

from .amounts import percent_ratio, round_nanos, round_ratio, to_nanos
from .timebands import epoch_window


class DiscountKind(StrEnum):
    PERCENT = "percent"
    AMOUNT = "amount"


class UsesPer(StrEnum):
    """What ``max_uses`` counts over: the account's whole life, or each bill cycle."""

    ACCOUNT = "account"
    CYCLE = "cycle"


# A plain reference: enum member lookup through the metaclass is slow on the rating path.
_PERCENT: Final = DiscountKind.PERCENT


@dataclass(frozen=True, slots=True)
class Discount:
    """``value`` percent or ``value`` currency units off charges of ``services`` (empty: all)."""

    code: str
    kind: DiscountKind
    value: Decimal
    name: str = ""
    services: frozenset[str] = frozenset()
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    max_uses: int | None = None
    rounding: Rounding = Rounding.HALF_UP
    uses_per: UsesPer = UsesPer.ACCOUNT
    _ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    _value_nanos: int = field(init=False, repr=False, compare=False)
    _window: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ratio", percent_ratio(self.value))
        object.__setattr__(self, "_value_nanos", to_nanos(self.value))
        object.__setattr__(self, "_window", epoch_window(self.valid_from, self.valid_to))

    def applies(self, service: str, instant: int) -> bool:
        """Whether the discount covers ``service`` at epoch second ``instant``."""
        start, end = self._window
        return start <= instant < end and (not self.services or service in self.services)

    def amount_off(self, amount: int, places: int) -> int:
        """Nanos this discount takes off ``amount`` nanos (never more than ``amount``)."""
        if amount <= 0:
            return 0
        if self.kind is _PERCENT:
            numerator, denominator = self._ratio
            off = round_ratio(amount * numerator, denominator, places, self.rounding)
        else:
            off = round_nanos(self._value_nanos, places, self.rounding)
        return off if off < amount else amount


@dataclass(frozen=True, slots=True)
class ReferralReward:
    """``points`` of ``unit`` granted to the referrer for each new customer while valid."""

    code: str
    points: int
    unit: str = "points"
    name: str = ""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    _window: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_window", epoch_window(self.valid_from, self.valid_to))

    def in_force(self, instant: int) -> bool:
        start, end = self._window
        return start <= instant < end


__all__ = ["Discount", "DiscountKind", "ReferralReward", "UsesPer"]
