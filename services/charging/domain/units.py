"""Units and exact integer quantities of charging.

Every amount charging keeps is an integer in a fixed scale of its unit, because
the live balances sit in Redis and Lua numbers are IEEE doubles, exact only up
to 2^53. The scales:

- money: ``10^-d`` of the currency unit where ``d = max(6, minor-unit digits)``,
  i.e. micro-units for EUR/USD/JPY and the currency's own minor unit where it is
  finer (satoshis for BTC). ``Money`` amounts with more decimals are refused;
- time: whole seconds; volume: bytes; service units: a count.

Bounds keep every value a script can produce below 2^53: one request carries at
most ``MAX_QUANTITY`` (10^15) of its unit, and no bucket may hold more than
``MAX_BALANCE`` (2^52) or less than ``-MAX_BALANCE``; the Lua scripts check the
balance bound on every credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import Final

from services.common.money import Money, MoneyError, currency_exponent

# Largest amount (in the unit's scale) one request may carry: < 2^50.
MAX_QUANTITY: Final = 10**15
# Largest absolute balance of a bucket (and credit limit): leaves headroom below 2^53.
MAX_BALANCE: Final = 2**52
# Smallest number of decimal places money is kept with.
MIN_MONEY_DIGITS: Final = 6


class UnitKind(StrEnum):
    MONEY = "money"
    TIME = "time"
    VOLUME = "volume"
    SERVICE_UNITS = "units"


@cache
def money_digits(currency: str) -> int:
    """Decimal places money of ``currency`` is kept with (raises UnknownCurrency)."""
    return max(MIN_MONEY_DIGITS, currency_exponent(currency))


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit: the kind plus the currency (money) or what is counted (service units)."""

    kind: UnitKind
    code: str = ""

    def __post_init__(self) -> None:
        if self.kind is UnitKind.MONEY:
            money_digits(self.code)  # validates the currency
        elif self.kind is UnitKind.SERVICE_UNITS:
            if not self.code:
                object.__setattr__(self, "code", "unit")
        elif self.code:
            object.__setattr__(self, "code", "")

    @property
    def key(self) -> str:
        """The unit's short form in Redis and the ledger: ``m:EUR``, ``t``, ``v``, ``u:sms``."""
        if self.kind is UnitKind.MONEY:
            return f"m:{self.code}"
        if self.kind is UnitKind.TIME:
            return "t"
        if self.kind is UnitKind.VOLUME:
            return "v"
        return f"u:{self.code}"

    @classmethod
    def from_key(cls, key: str) -> Unit:
        prefix, _, code = key.partition(":")
        kinds = {
            "m": UnitKind.MONEY,
            "t": UnitKind.TIME,
            "v": UnitKind.VOLUME,
            "u": UnitKind.SERVICE_UNITS,
        }
        if prefix not in kinds:
            raise ValueError(f"not a unit key: {key!r}")
        return cls(kinds[prefix], code)

    @property
    def is_money(self) -> bool:
        return self.kind is UnitKind.MONEY

    @property
    def currency(self) -> str:
        if not self.is_money:
            raise ValueError(f"{self.key} is not money")
        return self.code

    def __str__(self) -> str:
        return self.key


TIME: Final = Unit(UnitKind.TIME)
VOLUME: Final = Unit(UnitKind.VOLUME)


def money_unit(currency: str) -> Unit:
    return Unit(UnitKind.MONEY, currency)


def service_units(name: str = "unit") -> Unit:
    return Unit(UnitKind.SERVICE_UNITS, name or "unit")


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact integer amount of one unit, in the unit's scale."""

    unit: Unit
    amount: int

    @classmethod
    def of_money(cls, money: Money) -> Quantity:
        return cls(money_unit(money.currency), scaled_money(money))

    def to_money(self) -> Money:
        return unscaled_money(self.amount, self.unit.currency)

    def __neg__(self) -> Quantity:
        return Quantity(self.unit, -self.amount)

    def __str__(self) -> str:
        if self.unit.is_money:
            return str(self.to_money())
        return f"{self.amount} {self.unit.key}"


def scaled_money(money: Money) -> int:
    """The integer amount of ``money`` in its stored scale; refuses finer amounts."""
    digits = money_digits(money.currency)
    scaled = money.amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{money} has more than {digits} decimal places")
    return int(scaled)


def unscaled_money(amount: int, currency: str) -> Money:
    return Money(Decimal(amount).scaleb(-money_digits(currency)), currency)


def within_quantity_bound(amount: int) -> bool:
    return -MAX_QUANTITY <= amount <= MAX_QUANTITY
