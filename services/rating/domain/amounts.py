"""Exact integer arithmetic for the rating hot path.

The tariff engine prices in **nanos**: integer billionths of the currency unit,
the finest scale ``google.type.Money`` (and so ``services.common.money``) can
carry. Every catalog price has at most nine decimal places, so a price times a
whole number of increments is an exact integer, and rounding to a tariff's
precision is an integer division with a named method. Decimal appears only at
the edges: when a catalog is compiled (``to_nanos``) and when a result is
handed out (``from_nanos``). This keeps rating exact and fast: Python ints are
several times cheaper than Decimal operations under a context.

The rounding rules here must agree with ``services.common.money.round_decimal``
for every ``Rounding`` method; the unit tests check that they do.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from services.common.money import MAX_SCALE, Rounding

NANOS_PER_UNIT: Final = 10**MAX_SCALE

# Units of one step at each precision, e.g. precision 2 -> one cent is 10_000_000 nanos.
_STEP: Final[tuple[int, ...]] = tuple(10 ** (MAX_SCALE - places) for places in range(MAX_SCALE + 1))


def to_nanos(value: Decimal) -> int:
    """Nanos of an exact decimal; refuses values finer than nine decimal places."""
    scaled = value.scaleb(MAX_SCALE)
    integral = scaled.to_integral_value()
    if scaled != integral:
        raise ValueError(f"{value} has more than {MAX_SCALE} decimal places")
    return int(integral)


def from_nanos(nanos: int, places: int) -> Decimal:
    """A Decimal with exactly ``places`` decimals; ``nanos`` must already be at that precision."""
    whole, rest = divmod(nanos, _STEP[places])
    if rest:
        raise ValueError(f"{nanos} nanos is not a multiple of 10^-{places}")
    return Decimal(whole).scaleb(-places)


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form: 1.500 -> 1.5, 10.0 -> 10."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def step(places: int) -> int:
    """Nanos in one unit of the last decimal place at ``places`` precision."""
    return _STEP[places]


def decimal_places(value: Decimal) -> int:
    """How many decimal places a Decimal is written with (0 for integers like 5 or 5E+2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


# Enum members are looked up through the enum's metaclass (~100 ns each); rounding runs
# several comparisons per rated event, so it compares against these plain references.
_FLOOR: Final = Rounding.FLOOR
_CEILING: Final = Rounding.CEILING
_UP: Final = Rounding.UP
_DOWN: Final = Rounding.DOWN
_HALF_UP: Final = Rounding.HALF_UP
_HALF_EVEN: Final = Rounding.HALF_EVEN


def round_div(numerator: int, denominator: int, rounding: Rounding) -> int:
    """``numerator / denominator`` rounded to an integer by ``rounding`` (denominator > 0)."""
    quotient, remainder = divmod(numerator, denominator)  # floor: 0 <= remainder < denominator
    if remainder == 0:
        return quotient
    # The exact value lies strictly between quotient and quotient + 1. Half-up is the
    # usual rule of tariffs and taxes, so it is decided first.
    if rounding is _HALF_UP or rounding is _HALF_EVEN:
        twice = 2 * remainder
        if twice < denominator:
            return quotient
        if twice > denominator:
            return quotient + 1
        if rounding is _HALF_UP:
            return quotient + 1 if numerator >= 0 else quotient  # a tie goes away from zero
        return quotient if quotient % 2 == 0 else quotient + 1  # a tie goes to even
    if rounding is _UP:
        return quotient + 1 if numerator >= 0 else quotient  # away from zero
    if rounding is _DOWN:
        return quotient if numerator >= 0 else quotient + 1  # towards zero
    if rounding is _CEILING:
        return quotient + 1
    return quotient  # FLOOR


def round_nanos(nanos: int, places: int, rounding: Rounding) -> int:
    """Round nanos to ``places`` decimals; the result is still in nanos."""
    unit = _STEP[places]
    if nanos % unit == 0:
        return nanos
    return round_div(nanos, unit, rounding) * unit


def round_ratio(numerator: int, denominator: int, places: int, rounding: Rounding) -> int:
    """Round the exact nanos value ``numerator / denominator`` to ``places`` decimals, in nanos."""
    unit = _STEP[places]
    return round_div(numerator, denominator * unit, rounding) * unit


def shown_amount(scaled: int, denominator: int) -> Decimal:
    """``scaled`` / ``denominator`` nanos to nine places (half even), trailing zeros dropped.

    Only for explanations (a breakdown's line of an amount priced per rate unit): what
    is charged is the exact fraction, rounded once by the rate's rule.
    """
    nanos = round_div(scaled, denominator, Rounding.HALF_EVEN) if denominator != 1 else scaled
    return plain(from_nanos(nanos, MAX_SCALE))


def ceil_div(numerator: int, denominator: int) -> int:
    """Whole units needed to cover ``numerator`` (non-negative) in steps of ``denominator``."""
    return -(-numerator // denominator)


def percent_ratio(percent: Decimal) -> tuple[int, int]:
    """A percentage as an exact fraction of one: ``Decimal('21')`` -> (21, 100)."""
    numerator, denominator = percent.as_integer_ratio()
    return numerator, denominator * 100
