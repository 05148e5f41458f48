"""Time tariffs: connection fee, first and subsequent increments, prices per band.

Prices are **per increment**, never per minute: ``first_price`` is what the
first increment costs, ``next_price`` what each subsequent increment costs. A
"60/60 at 0.10 a minute" tariff is ``first_increment=60, first_price=0.10,
next_increment=60, next_price=0.10``; "30/6 at 0.12 a minute" is
``30 @ 0.06`` then ``6 @ 0.012``. Per-increment prices keep every charge an
exact product (no division by 60), and the catalog document accepts a
per-minute price and converts it when that conversion is exact.

How a call is charged (``price_call``):

* A call of 0 seconds costs nothing (no connection fee): it was not connected.
* The connection fee is charged once per call.
* The first increment is charged once per call, at the first price of the band
  the call **starts** in, and covers the first ``first_increment`` seconds of the
  call whatever band they fall in (a 30 s call 10 s before a band boundary is
  one first increment, at the starting band's price).
* After the first increment, the call is charged per band segment: the
  seconds of each segment not covered by the first increment are rounded up to
  whole subsequent increments and priced at that segment's band. The increment
  clock restarts at each band boundary, so a split call pays at most one partial
  increment per boundary it crosses; and a split call costs exactly the sum of
  its segments' charges plus the connection fee.
* Included allowance (seconds) is drawn in whole increments from the start of
  the call: the first increment, then subsequent increments in order, until an
  increment is larger than what is left. A call fully covered by the allowance
  pays no connection fee; a partly covered call pays it.
* The connection fee is the tariff's, or the fee of the band the call starts
  in when that band's price names one (a peak call set-up costs more).

**Prices per rate unit** (ADR 0041): "0.02 a minute, charged per second" has no
exact price per one-second increment (0.02/60 never ends). With ``rate_unit``
set (60 seconds), every ``BandPrice`` is a price per rate unit and the
increments are only how the seconds are counted. The call is then priced
exactly in fractions of a nano: every amount is kept in units of
1/``rate_unit`` nano (an increment of ``s`` seconds at ``p`` nanos per rate
unit is ``p * s`` of them), so the sum is exact and the engine rounds it
**once**, at the end, with the rate's rounding rule. 61 s at 0.02 a minute per
second is 1.22/60 = 0.020333... EUR, 0.02 rounded half-up to cents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .amounts import shown_amount, to_nanos
from .errors import NoTariff
from .timebands import ANY_BAND


@dataclass(frozen=True, slots=True)
class BandPrice:
    """Prices of the first and of each subsequent increment in one band (per rate unit
    when the tariff has one), and the band's own connection fee, if it has one."""

    first_price: Decimal
    next_price: Decimal
    connection_fee: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TimeTariff:
    """A per-second tariff; ``prices`` maps band names (or ``"*"`` for any band) to prices.

    ``rate_unit`` None: prices are per increment. Otherwise they are per
    ``rate_unit`` seconds and amounts are kept in 1/``rate_unit`` nanos
    (``denominator``) until the engine rounds them once.
    """

    first_increment: int
    next_increment: int
    prices: Mapping[str, BandPrice]
    connection_fee: Decimal = Decimal(0)
    rate_unit: int | None = None
    # Scaled amounts of each band, computed once so rating is integer arithmetic:
    # (first increment, next increment, per-increment prices to show, connection fee).
    _nanos: dict[str, tuple[int, int, BandPrice, int]] = field(
        init=False, repr=False, compare=False
    )
    _connection_nanos: int = field(init=False, repr=False, compare=False)
    _denominator: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.first_increment < 1 or self.next_increment < 1:
            raise ValueError("increments are whole seconds, at least 1")
        if self.rate_unit is not None and self.rate_unit < 1:
            raise ValueError("a rate unit is whole seconds, at least 1")
        unit = self.rate_unit or 1
        first_seconds = self.first_increment if self.rate_unit else 1
        next_seconds = self.next_increment if self.rate_unit else 1
        nanos = {}
        for band, price in self.prices.items():
            first = to_nanos(price.first_price) * first_seconds
            step = to_nanos(price.next_price) * next_seconds
            fee = self.connection_fee if price.connection_fee is None else price.connection_fee
            shown = price
            if self.rate_unit is not None:
                shown = BandPrice(
                    shown_amount(first, unit), shown_amount(step, unit), price.connection_fee
                )
            nanos[band] = (first, step, shown, to_nanos(fee) * unit)
        object.__setattr__(self, "_nanos", nanos)
        object.__setattr__(self, "_connection_nanos", to_nanos(self.connection_fee))
        object.__setattr__(self, "_denominator", unit)

    def band_prices(self, band: str) -> tuple[int, int, BandPrice, int] | None:
        """(first, next) increment prices in 1/``denominator`` nanos for ``band`` (falling
        back to ``"*"``), the per-increment prices to show, and the connection fee."""
        found = self._nanos.get(band)
        return found if found is not None else self._nanos.get(ANY_BAND)

    def covers(self, band: str) -> bool:
        return band in self._nanos or ANY_BAND in self._nanos

    def connection_fee_in(self, band: str) -> Decimal:
        """The connection fee of a call starting in ``band``, as written."""
        price = self.prices.get(band) or self.prices.get(ANY_BAND)
        if price is None or price.connection_fee is None:
            return self.connection_fee
        return price.connection_fee

    @property
    def band_connection_fees(self) -> bool:
        return any(price.connection_fee is not None for price in self.prices.values())

    @property
    def connection_nanos(self) -> int:
        return self._connection_nanos

    @property
    def denominator(self) -> int:
        """Amounts of ``price_call`` are in nanos divided by this (1 without a rate unit)."""
        return self._denominator


# One band segment of a priced call: (band, offset from the call start in seconds,
# seconds in the band, first increment charged here, subsequent increments charged,
# the band's prices, amount in nanos). Plain tuples: one is built per segment per call.
SegmentCharge = tuple[str, int, int, bool, int, BandPrice, int]


# A call priced by ``price_call``, exact nanos before rounding and cost limits:
# (connection fee, segments, seconds charged, seconds drawn from the allowance, total),
# amounts in nanos divided by the tariff's ``denominator``.
CallCharge = tuple[int, list[SegmentCharge], int, int, int]


def price_call(
    tariff: TimeTariff, parts: list[tuple[str, int]], allowance: int, rate_id: str
) -> CallCharge:
    """Charge a call cut into (band, seconds) parts, drawing up to ``allowance`` seconds.

    Raises ``NoTariff`` when a part's band has no price in the tariff.
    """
    first = tariff.first_increment
    step = tariff.next_increment
    bands = tariff._nanos  # this module's own compiled prices, read directly on the hot path
    # Allowance is drawn while every increment so far was covered.
    drawing = allowance >= first
    left = allowance - first if drawing else 0
    drawn = first if drawing else 0
    charged = 0 if drawing else first
    segments: list[SegmentCharge] = []
    total = 0
    offset = 0
    connection = 0
    for band, seconds in parts:
        prices = bands.get(band) or bands.get(ANY_BAND)
        if prices is None:
            raise NoTariff(f"rate {rate_id} has no price for time band {band!r}")
        first_nanos, next_nanos, band_price, fee = prices
        if offset == 0:
            connection = fee
        charges_first = offset == 0 and not drawing
        covered = first - offset
        rest = seconds - covered if covered > 0 else seconds
        increments = -(-rest // step) if rest > 0 else 0
        if drawing and increments:
            free = left // step
            if free >= increments:
                free = increments
            else:
                drawing = False
            left -= free * step
            drawn += free * step
            increments -= free
        charged += increments * step
        amount = increments * next_nanos + (first_nanos if charges_first else 0)
        total += amount
        segments.append((band, offset, seconds, charges_first, increments, band_price, amount))
        offset += seconds
    if drawing:
        connection = 0
    return connection, segments, charged, drawn, connection + total


__all__ = ["BandPrice", "CallCharge", "SegmentCharge", "TimeTariff", "price_call"]
