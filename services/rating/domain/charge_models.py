"""Charge models for usage that is not priced by time band, and plan fees.

Every usage model prices ``quantity`` base units (bytes, messages, API calls,
seconds) of one event, given ``usage_to_date``: the chargeable units the account
already used in the current bill cycle (after allowances). Models that depend on
the cycle total charge the **difference** their cycle price makes, so the events
of a cycle always add up to the price of the cycle total:

* ``PerUnit``: each event rounded up to whole units of ``unit_size`` on its own
  (a 1,500-byte session billed per started KB is 2 KB), times the unit price.
* ``Package``: N units for a price, partial packages rounded up, counted on the
  cycle total: the event that starts a new package pays for it.
* ``GraduatedTiers``: each unit priced by the tier it falls in (units 1-100 at
  0.10, 101-1000 at 0.08 ...), plus a tier's flat fee when its first unit is used.
* ``VolumeTiers``: every unit of the cycle priced by the tier the cycle total
  falls in. Crossing a threshold re-prices the whole cycle, so the event that
  crosses it can be charged less than nothing (a credit); invoicing can price the
  cycle total with ``VolumeTiers.cycle_price`` directly.
* ``Percentage``: a percentage of an amount the event carries (a transaction fee
  of 2.9% + 0.30), rounded by the rate's rounding rule.

Prices are per unit of ``unit_size`` base units and must be exact to nine decimal
places (nanos); tier bounds count those units. ``PerUnit`` may charge in a finer
``increment`` than the unit its price is for (0.01 per MB charged per started
KB): the amount is then the exact fraction ``increments * increment * price /
unit_size``, kept in 1/``unit_size`` nanos (``denominator``) until the engine
rounds it once (ADR 0041).

Flat fees belong to plans rather than events: ``RecurringFee`` (charged in
advance or in arrears each cycle, prorated by days) and ``OneTimeFee``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from services.common.money import Rounding

from .amounts import (
    ceil_div,
    from_nanos,
    percent_ratio,
    plain,
    round_ratio,
    shown_amount,
    to_nanos,
)


@dataclass(slots=True)
class UnitLine:
    """One line of a usage charge: ``units`` at ``price`` make ``amount``."""

    description: str
    units: int
    price: Decimal
    amount: Decimal


# Lines are built with the rate's precision where amounts are exact at nine places;
# ``from_nanos`` at nine places never needs rounding.
_EXACT = 9


def _line(description: str, units: int, price_nanos: int, amount_nanos: int) -> UnitLine:
    return UnitLine(
        description,
        units,
        plain(from_nanos(price_nanos, _EXACT)),
        plain(from_nanos(amount_nanos, _EXACT)),
    )


@dataclass(frozen=True, slots=True)
class PerUnit:
    """``price`` per unit of ``unit_size`` base units, each event rounded up on its own:
    to whole units, or to whole ``increment``s when it is charged in finer steps."""

    price: Decimal
    unit_size: int = 1
    increment: int | None = None
    _price_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit_size < 1:
            raise ValueError("unit_size must be at least 1")
        if self.increment is not None and self.increment < 1:
            raise ValueError("increment must be at least 1")
        object.__setattr__(self, "_price_nanos", to_nanos(self.price))

    @property
    def denominator(self) -> int:
        """Amounts of ``price_usage`` are in nanos divided by this."""
        return 1 if self.increment is None else self.unit_size

    def price_usage(self, quantity: int, usage_to_date: int) -> tuple[int, list[UnitLine]]:
        if self.increment is None:
            units = ceil_div(quantity, self.unit_size)
            amount = units * self._price_nanos
            return amount, [_line(f"per {self.unit_size}", units, self._price_nanos, amount)]
        charged = ceil_div(quantity, self.increment) * self.increment
        amount = charged * self._price_nanos  # in 1/unit_size nanos: exact
        line = UnitLine(
            f"per {self.unit_size} in steps of {self.increment}",
            charged,
            plain(self.price),
            shown_amount(amount, self.unit_size),
        )
        return amount, [line]


@dataclass(frozen=True, slots=True)
class Package:
    """``size`` base units for ``price``; the cycle's partial package is rounded up."""

    size: int
    price: Decimal
    _price_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("package size must be at least 1")
        object.__setattr__(self, "_price_nanos", to_nanos(self.price))

    def packages(self, units: int) -> int:
        return ceil_div(units, self.size)

    def price_usage(self, quantity: int, usage_to_date: int) -> tuple[int, list[UnitLine]]:
        started = self.packages(usage_to_date + quantity) - self.packages(usage_to_date)
        amount = started * self._price_nanos
        return amount, [_line(f"package of {self.size}", started, self._price_nanos, amount)]


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to ``up_to`` (inclusive; None: no limit) at ``unit_price``, plus ``flat_fee``."""

    up_to: int | None
    unit_price: Decimal
    flat_fee: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class _TierTable:
    """Tiers with lower bounds and nanos, shared by the graduated and volume models."""

    lows: tuple[int, ...]
    highs: tuple[int | None, ...]
    prices: tuple[int, ...]
    flats: tuple[int, ...]

    @classmethod
    def of(cls, tiers: tuple[Tier, ...]) -> _TierTable:
        if not tiers:
            raise ValueError("at least one tier is needed")
        lows: list[int] = []
        low = 0
        for index, tier in enumerate(tiers):
            last = index == len(tiers) - 1
            if tier.up_to is None and not last:
                raise ValueError("only the last tier may be unlimited")
            if tier.up_to is not None and tier.up_to <= low:
                raise ValueError("tier bounds must increase")
            lows.append(low)
            low = tier.up_to if tier.up_to is not None else low
        return cls(
            tuple(lows),
            tuple(t.up_to for t in tiers),
            tuple(to_nanos(t.unit_price) for t in tiers),
            tuple(to_nanos(t.flat_fee) for t in tiers),
        )

    def index_of(self, unit: int) -> int:
        """Tier of the ``unit``-th unit (1-based)."""
        for index, high in enumerate(self.highs):
            if high is None or unit <= high:
                return index
        return len(self.highs) - 1


@dataclass(frozen=True, slots=True)
class GraduatedTiers:
    """Each unit priced by the tier it falls in; a tier's flat fee when it is entered."""

    tiers: tuple[Tier, ...]
    unit_size: int = 1
    _table: _TierTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit_size < 1:
            raise ValueError("unit_size must be at least 1")
        object.__setattr__(self, "_table", _TierTable.of(self.tiers))

    def cycle_price(self, units: int) -> int:
        """Nanos for ``units`` units (of ``unit_size``) in one cycle."""
        return self._between(0, units)[0]

    def price_usage(self, quantity: int, usage_to_date: int) -> tuple[int, list[UnitLine]]:
        before = ceil_div(usage_to_date, self.unit_size)
        after = ceil_div(usage_to_date + quantity, self.unit_size)
        return self._between(before, after)

    def _between(self, before: int, after: int) -> tuple[int, list[UnitLine]]:
        table = self._table
        total = 0
        lines: list[UnitLine] = []
        for index, low in enumerate(table.lows):
            high = table.highs[index]
            units = (after if high is None else min(after, high)) - max(before, low)
            if units <= 0:
                continue
            amount = units * table.prices[index]
            total += amount
            lines.append(_line(f"tier {index + 1}", units, table.prices[index], amount))
            if before <= low and table.flats[index]:
                total += table.flats[index]
                lines.append(
                    _line(f"tier {index + 1} flat fee", 1, table.flats[index], table.flats[index])
                )
        return total, lines


@dataclass(frozen=True, slots=True)
class VolumeTiers:
    """Every unit of the cycle priced by the tier the cycle total falls in."""

    tiers: tuple[Tier, ...]
    unit_size: int = 1
    _table: _TierTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit_size < 1:
            raise ValueError("unit_size must be at least 1")
        object.__setattr__(self, "_table", _TierTable.of(self.tiers))

    def cycle_price(self, units: int) -> int:
        """Nanos for ``units`` units (of ``unit_size``) in one cycle."""
        if units <= 0:
            return 0
        index = self._table.index_of(units)
        return units * self._table.prices[index] + self._table.flats[index]

    def price_usage(self, quantity: int, usage_to_date: int) -> tuple[int, list[UnitLine]]:
        before = ceil_div(usage_to_date, self.unit_size)
        after = ceil_div(usage_to_date + quantity, self.unit_size)
        table = self._table
        lines: list[UnitLine] = []
        now = self.cycle_price(after)
        if after:
            index = table.index_of(after)
            lines.append(_line(f"volume tier {index + 1}", after, table.prices[index], now))
        earlier = self.cycle_price(before)
        if before:
            index = table.index_of(before)
            lines.append(
                _line(
                    f"less volume tier {index + 1} already rated",
                    -before,
                    table.prices[index],
                    -earlier,
                )
            )
        return now - earlier, lines

    def threshold_units(self) -> tuple[int, ...]:
        """Cycle totals (in units) after which the cycle price can drop."""
        return tuple(high for high in self._table.highs if high is not None)


@dataclass(frozen=True, slots=True)
class Percentage:
    """``percent`` of the amount the event carries, plus ``fixed_fee`` per event."""

    percent: Decimal
    fixed_fee: Decimal = Decimal(0)
    _ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    _fixed_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ratio", percent_ratio(self.percent))
        object.__setattr__(self, "_fixed_nanos", to_nanos(self.fixed_fee))

    def price_amount(
        self, base_nanos: int, places: int, rounding: Rounding
    ) -> tuple[int, list[UnitLine]]:
        numerator, denominator = self._ratio
        share = round_ratio(base_nanos * numerator, denominator, places, rounding)
        lines = [
            UnitLine(
                f"{plain(self.percent)}% of {plain(from_nanos(base_nanos, _EXACT))}",
                1,
                self.percent,
                from_nanos(share, places),
            )
        ]
        if self._fixed_nanos:
            lines.append(_line("fixed fee", 1, self._fixed_nanos, self._fixed_nanos))
        return share + self._fixed_nanos, lines


UsageModel = PerUnit | Package | GraduatedTiers | VolumeTiers | Percentage


class FeeTiming(StrEnum):
    IN_ADVANCE = "in_advance"  # billed at the start of the cycle it pays for
    IN_ARREARS = "in_arrears"  # billed at the end of the cycle it paid for


@dataclass(frozen=True, slots=True)
class RecurringFee:
    """A flat fee per bill cycle (a subscription), prorated by days when partly used."""

    code: str
    amount: Decimal
    timing: FeeTiming = FeeTiming.IN_ADVANCE
    name: str = ""
    service: str = ""  # the product it is for, for tax rules per service

    def prorated_nanos(
        self, days_used: int, days_in_cycle: int, places: int, rounding: Rounding
    ) -> int:
        """The fee for ``days_used`` of a ``days_in_cycle``-day cycle, rounded once."""
        if days_in_cycle < 1 or not 0 <= days_used <= days_in_cycle:
            raise ValueError("days used must be within the cycle")
        return round_ratio(to_nanos(self.amount) * days_used, days_in_cycle, places, rounding)


@dataclass(frozen=True, slots=True)
class OneTimeFee:
    """A fee charged once (activation, SIM card, setup)."""

    code: str
    amount: Decimal
    name: str = ""
    service: str = ""


Fee = RecurringFee | OneTimeFee

__all__ = [
    "Fee",
    "FeeTiming",
    "GraduatedTiers",
    "OneTimeFee",
    "Package",
    "PerUnit",
    "Percentage",
    "RecurringFee",
    "Tier",
    "UnitLine",
    "UsageModel",
    "VolumeTiers",
]
