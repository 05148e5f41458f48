"""Bill cycles in the account's time zone: month ends, year ends, daylight saving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.accounts.domain.billing_cycle import (
    billing_period,
    is_known_time_zone,
    next_cycle_start,
)


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_cycle_runs_from_cycle_day_to_cycle_day_at_local_midnight() -> None:
    period = billing_period(utc(2026, 1, 20, 12), 15, "Europe/Amsterdam")
    assert period.start == utc(2026, 1, 14, 23)  # 15 Jan 00:00 CET
    assert period.end == utc(2026, 2, 14, 23)


def test_before_the_cycle_day_the_cycle_began_last_month() -> None:
    period = billing_period(utc(2026, 3, 2, 12), 28, "UTC")
    assert (period.start, period.end) == (utc(2026, 2, 28), utc(2026, 3, 28))


def test_cycle_day_28_covers_february_end_and_the_31st() -> None:
    assert billing_period(utc(2026, 1, 31, 12), 28, "UTC").end == utc(2026, 2, 28)
    assert billing_period(utc(2028, 2, 29, 12), 28, "UTC").start == utc(2028, 2, 28)  # leap


def test_cycle_wraps_the_year() -> None:
    period = billing_period(utc(2026, 12, 20), 5, "UTC")
    assert (period.start, period.end) == (utc(2026, 12, 5), utc(2027, 1, 5))
    period = billing_period(utc(2027, 1, 2), 5, "UTC")
    assert (period.start, period.end) == (utc(2026, 12, 5), utc(2027, 1, 5))


def test_the_instant_of_the_boundary_belongs_to_the_new_cycle() -> None:
    boundary = utc(2026, 1, 31, 23)  # 1 Feb 00:00 in Amsterdam
    assert billing_period(boundary, 1, "Europe/Amsterdam").start == boundary
    assert next_cycle_start(boundary - timedelta(microseconds=1), 1, "Europe/Amsterdam") == (
        boundary
    )


def test_a_cycle_across_spring_forward_is_an_hour_short() -> None:
    # Europe moves to summer time on 29 March 2026.
    period = billing_period(utc(2026, 4, 1), 28, "Europe/Amsterdam")
    assert period.start == utc(2026, 3, 27, 23)  # 28 Mar 00:00 +01:00
    assert period.end == utc(2026, 4, 27, 22)  # 28 Apr 00:00 +02:00
    assert period.end - period.start == timedelta(days=31, hours=-1)


def test_a_cycle_across_fall_back_is_an_hour_long() -> None:
    period = billing_period(utc(2026, 11, 1), 25, "Europe/Amsterdam")  # back on 25 Oct
    assert period.start == utc(2026, 10, 24, 22)
    assert period.end == utc(2026, 11, 24, 23)
    assert period.end - period.start == timedelta(days=31, hours=1)


def test_where_local_midnight_does_not_exist_the_cycle_starts_when_the_day_does() -> None:
    # Chile springs forward at midnight: 6 Sep 2026 starts at 01:00 -03:00.
    period = billing_period(utc(2026, 9, 10), 6, "America/Santiago")
    assert period.start == utc(2026, 9, 6, 4)
    assert period.start.astimezone(ZoneInfo("America/Santiago")).hour == 1
    assert period.end == utc(2026, 10, 6, 3)  # 00:00 -03:00


def test_far_east_and_west_zones() -> None:
    assert billing_period(utc(2026, 5, 10), 1, "Pacific/Kiritimati").start == utc(2026, 4, 30, 10)
    assert billing_period(utc(2026, 5, 10), 1, "Pacific/Pago_Pago").start == utc(2026, 5, 1, 11)


@pytest.mark.parametrize("day", [0, 29, 31, -1])
def test_cycle_day_outside_1_to_28_is_refused(day: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.28"):
        billing_period(utc(2026, 1, 1), day, "UTC")


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("Europe/Amsterdam", True),
        ("UTC", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Mars/Olympus_Mons", False),
        ("", False),
        ("../etc/passwd", False),
        (" Europe/Amsterdam", False),
    ],
)
def test_time_zones_are_checked_against_the_tz_database(name: str, known: bool) -> None:
    assert is_known_time_zone(name) is known


ZONES = [
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
]


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    day=st.integers(min_value=1, max_value=28),
    zone=st.sampled_from(ZONES),
)
def test_cycles_contain_their_instant_and_tile_time(instant: datetime, day: int, zone: str) -> None:
    period = billing_period(instant, day, zone)
    assert period.start <= instant < period.end
    local_start = period.start.astimezone(ZoneInfo(zone))
    assert local_start.day == day
    assert local_start.hour <= 1  # midnight, or the first hour of a day that skips it
    following = billing_period(period.end, day, zone)
    assert following.start == period.end  # no gap, no overlap
    assert timedelta(days=27) < period.end - period.start < timedelta(days=32)
