"""Bill cycles: the periods an account is invoiced for, in the account's time zone.

A cycle starts at local midnight of the bill cycle day (1..28, so every month
has it) and ends where the next one starts. Boundaries are computed on the
local calendar and only then turned into UTC instants, so a cycle stays
"the 5th to the 5th" across daylight-saving changes (it is an hour shorter or
longer than 24 * days, as the wall clock says). Where midnight does not exist
on the local clock (zones that change offset at 00:00), the boundary is the
first instant of that local day, which is what ``fold=0`` yields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.common.clock import ensure_utc

MIN_BILL_CYCLE_DAY = 1
MAX_BILL_CYCLE_DAY = 28


@dataclass(frozen=True)
class BillingPeriod:
    """A half-open interval [start, end) of UTC instants."""

    start: datetime
    end: datetime

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@lru_cache(maxsize=512)
def zone(time_zone: str) -> ZoneInfo:
    return ZoneInfo(time_zone)


def is_known_time_zone(time_zone: str) -> bool:
    """An IANA zone name the system's tz database knows (``Europe/Amsterdam``, ``UTC``)."""
    if not time_zone or time_zone != time_zone.strip() or ".." in time_zone:
        return False
    try:
        zone(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def billing_period(instant: datetime, bill_cycle_day: int, time_zone: str) -> BillingPeriod:
    """The bill cycle that contains ``instant``."""
    if not MIN_BILL_CYCLE_DAY <= bill_cycle_day <= MAX_BILL_CYCLE_DAY:
        raise ValueError(f"bill cycle day must be 1..28, got {bill_cycle_day}")
    instant = ensure_utc(instant)
    tz = zone(time_zone)
    local = instant.astimezone(tz)
    year, month = local.year, local.month
    if local.day < bill_cycle_day:
        year, month = _previous_month(year, month)
    start = _cycle_start(year, month, bill_cycle_day, tz)
    if start > instant:  # only conceivable around odd historical offsets; stay correct
        year, month = _previous_month(year, month)
        start = _cycle_start(year, month, bill_cycle_day, tz)
    end = _cycle_start(*_next_month(year, month), bill_cycle_day, tz)
    return BillingPeriod(start, end)


def next_cycle_start(instant: datetime, bill_cycle_day: int, time_zone: str) -> datetime:
    """The first cycle boundary strictly after ``instant``."""
    return billing_period(instant, bill_cycle_day, time_zone).end


def _cycle_start(year: int, month: int, day: int, tz: ZoneInfo) -> datetime:
    return datetime(year, month, day, tzinfo=tz).astimezone(UTC)


def _previous_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)
