"""The one money type of Reckon.

Money is an exact decimal amount in an ISO 4217 currency (or one of the few
crypto currencies the charging domain supports). Floats never enter: amounts
are built from ``Decimal``, ``int`` or ``str`` only, and rounding is always an
explicit call with a named method, because rounding is a rule of a tariff or a
currency, never an accident of arithmetic.

The wire form is ``google.type.Money`` (units + nanos), so an amount may carry at
most nine decimal places; ``services.common.proto_money`` does the translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Final

# google.type.Money carries nanos: nine decimal places is the most any amount may have.
MAX_SCALE: Final = 9
# Enough digits for int64 units plus nine places with room for intermediate products.
_CONTEXT: Final = Context(prec=40)

# ISO 4217 active codes whose minor unit is not 2 decimals.
_EXPONENT_EXCEPTIONS: Final[dict[str, int]] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
    # Crypto currencies used for prepaid balances (CHG-5); not ISO 4217, capped by MAX_SCALE.
    "BTC": 8,
    "XBT": 8,
    "LTC": 8,
    "USDC": 6,
    "USDT": 6,
}
# ISO 4217 active codes with two decimals.
_TWO_DECIMALS: Final = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IRR",
        "JMD",
        "KES",
        "KGS",
        "KHR",
        "KPW",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "USD",
        "USN",
        "UYU",
        "UZS",
        "VED",
        "VES",
        "WST",
        "XCD",
        "XCG",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
    ]
)


def currency_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD)."""
    if currency in _EXPONENT_EXCEPTIONS:
        return _EXPONENT_EXCEPTIONS[currency]
    if currency in _TWO_DECIMALS:
        return 2
    raise UnknownCurrency(currency)


def is_known_currency(currency: str) -> bool:
    return currency in _EXPONENT_EXCEPTIONS or currency in _TWO_DECIMALS


class MoneyError(ValueError):
    """A money value or operation that cannot be exact."""


class UnknownCurrency(MoneyError):
    def __init__(self, currency: str) -> None:
        super().__init__(f"unknown currency code {currency!r} (expected an ISO 4217 code)")
        self.currency = currency


class CurrencyMismatch(MoneyError):
    def __init__(self, left: str, right: str) -> None:
        super().__init__(f"cannot combine {left} with {right}")


class Rounding(StrEnum):
    """Rounding methods a tariff or currency may name."""

    HALF_EVEN = "ROUND_HALF_EVEN"  # banker's rounding: the default for currencies
    HALF_UP = "ROUND_HALF_UP"
    UP = "ROUND_UP"  # away from zero: a started cent is charged
    DOWN = "ROUND_DOWN"  # towards zero: truncate
    CEILING = "ROUND_CEILING"
    FLOOR = "ROUND_FLOOR"


def to_decimal(value: Decimal | int | str) -> Decimal:
    """An exact Decimal from an int, str or Decimal; floats are refused."""
    if isinstance(value, bool | float):
        raise MoneyError(f"refusing inexact value {value!r}: use Decimal, int or str")
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError(f"not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency. Arithmetic across currencies is refused."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        # Most amounts are already Decimals (arithmetic, storage): skip re-parsing them;
        # bill runs make tens of Money values per invoice.
        if type(amount) is not Decimal or not amount.is_finite():
            amount = to_decimal(amount)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_SCALE:
            raise MoneyError(f"{amount} has more than {MAX_SCALE} decimal places; round it first")
        currency_exponent(self.currency)  # validates the code
        object.__setattr__(self, "amount", amount)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(to_decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor_units(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-currency_exponent(currency)), currency)

    # -- queries ------------------------------------------------------------------------
    @property
    def minor_units(self) -> int:
        """The amount in the currency's minor unit; refuses amounts that need rounding."""
        scaled = self.amount.scaleb(currency_exponent(self.currency))
        if scaled != scaled.to_integral_value():
            raise MoneyError(f"{self} is not a whole number of minor units; round it first")
        return int(scaled)

    def __composite_values__(self) -> tuple[Decimal, str]:
        """The column values an ORM stores (amount, currency): SQLAlchemy's composite hook."""
        return (self.amount, self.currency)

    def is_zero(self) -> bool:
        return self.amount == 0

    def is_negative(self) -> bool:
        return self.amount < 0

    def is_positive(self) -> bool:
        return self.amount > 0

    # -- arithmetic ---------------------------------------------------------------------
    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"expected Money, got {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        with localcontext(_CONTEXT):
            return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        with localcontext(_CONTEXT):
            return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def times(
        self,
        factor: Decimal | int,
        *,
        places: int | None = None,
        rounding: Rounding = Rounding.HALF_EVEN,
    ) -> Money:
        """Multiply by an exact factor and round to ``places`` (default: the currency's)."""
        with localcontext(_CONTEXT):
            product = self.amount * to_decimal(factor)
        return Money(_round(product, self._places(places), rounding), self.currency)

    def rounded(self, places: int | None = None, rounding: Rounding = Rounding.HALF_EVEN) -> Money:
        return Money(_round(self.amount, self._places(places), rounding), self.currency)

    def allocate(self, ratios: list[int]) -> list[Money]:
        """Split into parts proportional to ``ratios`` that sum exactly to this amount.

        Remainders go one minor unit at a time to the first parts, so no cent is lost
        or invented when a total is spread over lines.
        """
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise MoneyError("allocate needs non-negative ratios with a positive sum")
        total = self.minor_units
        total_ratio = sum(ratios)
        parts = [total * r // total_ratio for r in ratios]
        remainder = total - sum(parts)
        step = 1 if remainder >= 0 else -1
        for i in range(abs(remainder)):
            parts[i % len(parts)] += step
        return [Money.from_minor_units(p, self.currency) for p in parts]

    def _places(self, places: int | None) -> int:
        chosen = currency_exponent(self.currency) if places is None else places
        if not 0 <= chosen <= MAX_SCALE:
            raise MoneyError(f"precision must be 0..{MAX_SCALE} places, got {chosen}")
        return chosen

    # -- comparison ---------------------------------------------------------------------
    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def _round(value: Decimal, places: int, rounding: Rounding) -> Decimal:
    with localcontext(_CONTEXT):
        return value.quantize(Decimal(1).scaleb(-places), rounding=rounding.value)


def round_decimal(value: Decimal, places: int, rounding: Rounding = Rounding.HALF_EVEN) -> Decimal:
    """Round a plain decimal quantity (a rate, a unit count) with a named method."""
    return _round(value, places, rounding)


__all__ = [
    "MAX_SCALE",
    "ROUND_HALF_EVEN",
    "CurrencyMismatch",
    "Money",
    "MoneyError",
    "Rounding",
    "UnknownCurrency",
    "currency_exponent",
    "is_known_currency",
    "round_decimal",
    "to_decimal",
]
