"""Bill cycles and proration by days (DOMAIN.md "Conventions for the billing half").

A cycle runs from the bill cycle day (BCD) at 00:00 in the account's time zone
to the same local time one month later. A BCD of 29-31 falls on the last day
of shorter months (BCD 31: 31 Jan, 28 Feb, 31 Mar ...). Boundaries are computed
on the local calendar and only then turned into UTC instants, so daylight-saving
changes never move a boundary (a cycle with a DST change is an hour shorter or
longer, as the wall clock says). Days are counted on the local calendar too.

Proration: ``fee * days_used / days_in_cycle``, the change day included and
the cycle's end day excluded, rounded once half-up to the currency's minor unit.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.clock import ensure_utc
from services.common.money import Money, Rounding, currency_exponent, round_decimal

MIN_BILL_CYCLE_DAY = 1
MAX_BILL_CYCLE_DAY = 31


@lru_cache(maxsize=512)
def zone(time_zone: str) -> ZoneInfo:
    return ZoneInfo(time_zone)


def is_known_time_zone(time_zone: str) -> bool:
    if not time_zone or time_zone != time_zone.strip() or ".." in time_zone:
        return False
    try:
        zone(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def local_date(instant: datetime, time_zone: str) -> date:
    """The calendar date of ``instant`` in ``time_zone``."""
    return ensure_utc(instant).astimezone(zone(time_zone)).date()


@functools.lru_cache(maxsize=4096)
def local_midnight(day: date, time_zone: str) -> datetime:
    """00:00 of ``day`` in ``time_zone`` as a UTC instant (fold=0 where midnight is skipped)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(time_zone)).astimezone(UTC)


def cycle_start_date(year: int, month: int, bill_cycle_day: int) -> date:
    """The first day of the cycle starting in ``year``/``month``: the BCD or the last day."""
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(bill_cycle_day, last))


@dataclass(frozen=True)
class Cycle:
    """One bill cycle [start, end) of an account; dates are local, instants UTC."""

    start_date: date
    end_date: date  # exclusive: the next cycle's first day
    time_zone: str
    bill_cycle_day: int

    @property
    def start(self) -> datetime:
        return local_midnight(self.start_date, self.time_zone)

    @property
    def end(self) -> datetime:
        return local_midnight(self.end_date, self.time_zone)

    @property
    def days(self) -> int:
        return (self.end_date - self.start_date).days

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= ensure_utc(instant) < self.end

    def next(self) -> Cycle:
        return cycle_starting(self.end_date, self.bill_cycle_day, self.time_zone)

    def previous(self) -> Cycle:
        year, month = _previous_month(self.start_date.year, self.start_date.month)
        return cycle_starting(
            cycle_start_date(year, month, self.bill_cycle_day), self.bill_cycle_day, self.time_zone
        )

    def days_from(self, instant: datetime) -> int:
        """Days from the local date of ``instant`` (included) to the cycle end (excluded)."""
        day = min(max(local_date(instant, self.time_zone), self.start_date), self.end_date)
        return (self.end_date - day).days

    def days_until(self, instant: datetime) -> int:
        """Days from the cycle start (included) to the local date of ``instant`` (excluded)."""
        day = min(max(local_date(instant, self.time_zone), self.start_date), self.end_date)
        return (day - self.start_date).days


def _check_bcd(bill_cycle_day: int) -> None:
    if not MIN_BILL_CYCLE_DAY <= bill_cycle_day <= MAX_BILL_CYCLE_DAY:
        raise ValueError(f"bill cycle day must be 1..31, got {bill_cycle_day}")


def cycle_starting(start_date: date, bill_cycle_day: int, time_zone: str) -> Cycle:
    """The cycle that starts on ``start_date`` (a boundary of this BCD)."""
    _check_bcd(bill_cycle_day)
    year, month = _next_month(start_date.year, start_date.month)
    return Cycle(
        start_date, cycle_start_date(year, month, bill_cycle_day), time_zone, bill_cycle_day
    )


def cycle_containing(instant: datetime, bill_cycle_day: int, time_zone: str) -> Cycle:
    """The cycle of this BCD and zone that contains ``instant``."""
    _check_bcd(bill_cycle_day)
    today = local_date(instant, time_zone)
    this_month = cycle_start_date(today.year, today.month, bill_cycle_day)
    if today >= this_month:
        return cycle_starting(this_month, bill_cycle_day, time_zone)
    year, month = _previous_month(today.year, today.month)
    return cycle_starting(cycle_start_date(year, month, bill_cycle_day), bill_cycle_day, time_zone)


def last_ended_cycle(instant: datetime, bill_cycle_day: int, time_zone: str) -> Cycle:
    """The latest cycle that ended at or before ``instant``."""
    return cycle_containing(instant, bill_cycle_day, time_zone).previous()


def latest_cycle_end(instant: datetime, cycle_zones: Iterable[tuple[int, str]]) -> datetime:
    """The newest instant at or before ``instant`` at which a cycle ended, in any of these
    (bill cycle day, time zone) pairs, or the latest UTC midnight if that is newer.

    Each pair's cycles end at local midnight of its own zone: Los Angeles' BCD 1 ends at
    08:00Z, Auckland's at 11:00Z the day before. The UTC midnight keeps one pass a day
    even when no cycle ended (accounts that failed are tried again then).
    """
    utc = ensure_utc(instant)
    newest = datetime(utc.year, utc.month, utc.day, tzinfo=UTC)
    for bill_cycle_day, time_zone in cycle_zones:
        newest = max(newest, cycle_containing(utc, bill_cycle_day, time_zone).start)
    return newest


def prorate(fee: Money, days_used: int, days_in_cycle: int) -> Money:
    """``fee * days_used / days_in_cycle`` rounded once, half-up, to the minor unit."""
    if days_in_cycle < 1 or not 0 <= days_used <= days_in_cycle:
        raise ValueError(f"days used {days_used} must be within a {days_in_cycle}-day cycle")
    # Multiply before dividing, in a context wide enough to be exact up to the rounding.
    with localcontext() as context:
        context.prec = 60
        exact = fee.amount * days_used / Decimal(days_in_cycle)
    places = currency_exponent(fee.currency)
    return Money(round_decimal(exact, places, Rounding.HALF_UP), fee.currency)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)
