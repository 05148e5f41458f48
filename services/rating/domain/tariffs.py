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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .amounts import to_nanos
from .errors import NoTariff
from .timebands import ANY_BAND


@dataclass(frozen=True, slots=True)
class BandPrice:
    """Prices of the first and of each subsequent increment in one band."""

    first_price: Decimal
    next_price: Decimal


@dataclass(frozen=True, slots=True)
class TimeTariff:
    """A per-second tariff; ``prices`` maps band names (or ``"*"`` for any band) to prices."""

    first_increment: int
    next_increment: int
    prices: Mapping[str, BandPrice]
    connection_fee: Decimal = Decimal(0)
    # Nanos of each price, computed once so rating is integer arithmetic.
    _nanos: dict[str, tuple[int, int, BandPrice]] = field(init=False, repr=False, compare=False)
    _connection_nanos: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.first_increment < 1 or self.next_increment < 1:
            raise ValueError("increments are whole seconds, at least 1")
        nanos = {
            band: (to_nanos(price.first_price), to_nanos(price.next_price), price)
            for band, price in self.prices.items()
        }
        object.__setattr__(self, "_nanos", nanos)
        object.__setattr__(self, "_connection_nanos", to_nanos(self.connection_fee))

    def band_prices(self, band: str) -> tuple[int, int, BandPrice] | None:
        """(first, next) increment prices in nanos for ``band`` (falling back to ``"*"``),
        with the prices as written."""
        found = self._nanos.get(band)
        return found if found is not None else self._nanos.get(ANY_BAND)

    def covers(self, band: str) -> bool:
        return band in self._nanos or ANY_BAND in self._nanos

    @property
    def connection_nanos(self) -> int:
        return self._connection_nanos


# One band segment of a priced call: (band, offset from the call start in seconds,
# seconds in the band, first increment charged here, subsequent increments charged,
# the band's prices, amount in nanos). Plain tuples: one is built per segment per call.
SegmentCharge = tuple[str, int, int, bool, int, BandPrice, int]


# A call priced by ``price_call``, exact nanos before rounding and cost limits:
# (connection fee, segments, seconds charged, seconds drawn from the allowance, total).
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
    for band, seconds in parts:
        prices = bands.get(band) or bands.get(ANY_BAND)
        if prices is None:
            raise NoTariff(f"rate {rate_id} has no price for time band {band!r}")
        first_nanos, next_nanos, band_price = prices
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
    connection = 0 if drawing else tariff.connection_nanos
    return connection, segments, charged, drawn, connection + total


__all__ = ["BandPrice", "CallCharge", "SegmentCharge", "TimeTariff", "price_call"]
