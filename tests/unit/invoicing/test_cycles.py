"""Worked examples of bill cycles and proration a billing analyst can check by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.common.money import Money
from services.invoicing.domain.cycles import (
    cycle_containing,
    cycle_starting,
    last_ended_cycle,
    latest_cycle_end,
    prorate,
)

AMS = "Europe/Amsterdam"


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def test_bcd_31_falls_on_the_last_day_of_february() -> None:
    cycle = cycle_containing(datetime(2027, 2, 15, tzinfo=UTC), 31, "UTC")
    assert (cycle.start_date, cycle.end_date, cycle.days) == (
        date(2027, 1, 31),
        date(2027, 2, 28),
        28,
    )
    after = cycle.next()
    assert (after.start_date, after.end_date, after.days) == (
        date(2027, 2, 28),
        date(2027, 3, 31),
        31,
    )
    assert after.next().end_date == date(2027, 4, 30)
    # A leap year's February ends on the 29th.
    leap = cycle_containing(datetime(2028, 2, 10, tzinfo=UTC), 30, "UTC")
    assert (leap.start_date, leap.end_date) == (date(2028, 1, 30), date(2028, 2, 29))


def test_dst_never_moves_a_boundary() -> None:
    # Amsterdam goes from UTC+1 to UTC+2 on 28 March 2027: both boundaries are local
    # midnight, so the cycle is 31 days on the calendar and 743 hours long.
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)
    assert march.start == datetime(2027, 2, 28, 23, 0, tzinfo=UTC)
    assert march.end == datetime(2027, 3, 31, 22, 0, tzinfo=UTC)
    assert march.days == 31
    assert (march.end - march.start).total_seconds() == 743 * 3600
    # 30.00 a month from 29 March (the change day included, 1 April excluded): 3 days.
    change = datetime(2027, 3, 29, 8, 0, tzinfo=UTC)
    assert march.days_from(change) == 3
    assert prorate(eur("30.00"), 3, 31) == eur("2.90")  # 2.9032... half-up


def test_an_instant_at_local_midnight_starts_the_new_cycle() -> None:
    boundary = datetime(2027, 3, 31, 22, 0, tzinfo=UTC)  # 1 April 00:00 in Amsterdam
    assert cycle_containing(boundary, 1, AMS).start_date == date(2027, 4, 1)
    assert last_ended_cycle(boundary, 1, AMS).start_date == date(2027, 3, 1)


def test_proration_rounds_once_half_up() -> None:
    assert prorate(eur("10.00"), 16, 31) == eur("5.16")  # 5.1612...
    assert prorate(eur("0.10"), 15, 20) == eur("0.08")  # 0.075 -> 0.08 (half-up, not even)
    assert prorate(eur("9.99"), 31, 31) == eur("9.99")
    assert prorate(Money.of("1000", "JPY"), 10, 30) == Money.of("333", "JPY")
    with pytest.raises(ValueError, match="within"):
        prorate(eur("1"), 32, 31)


def test_cycle_starting_refuses_a_bcd_outside_1_to_31() -> None:
    with pytest.raises(ValueError, match=r"1\.\.31"):
        cycle_starting(date(2027, 1, 1), 32, "UTC")


def test_latest_cycle_end_is_local_midnight_of_each_accounts_zone() -> None:
    zones = [(1, "America/Los_Angeles"), (1, "Pacific/Auckland")]
    # Auckland's 1 February began at 11:00Z on 31 January; Los Angeles' at 08:00Z.
    assert latest_cycle_end(datetime(2027, 1, 31, 10, 59, tzinfo=UTC), zones) == datetime(
        2027, 1, 31, tzinfo=UTC
    )
    assert latest_cycle_end(datetime(2027, 1, 31, 11, tzinfo=UTC), zones) == datetime(
        2027, 1, 31, 11, tzinfo=UTC
    )
    assert latest_cycle_end(datetime(2027, 2, 1, 7, 59, tzinfo=UTC), zones) == datetime(
        2027, 2, 1, tzinfo=UTC
    )
    assert latest_cycle_end(datetime(2027, 2, 1, 8, tzinfo=UTC), zones) == datetime(
        2027, 2, 1, 8, tzinfo=UTC
    )
    assert latest_cycle_end(datetime(2027, 2, 1, 8, tzinfo=UTC), []) == datetime(
        2027, 2, 1, tzinfo=UTC
    )
