"""Payment discipline reads the day a payment landed in the account's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from gateway.reports import paid_on_time

DUE = date(2027, 3, 15)


def test_a_late_evening_payment_west_of_utc_is_on_time() -> None:
    # 23:30 in Lima on the due date is 04:30 UTC the next day.
    paid = [datetime(2027, 3, 16, 4, 30, tzinfo=UTC)]
    assert paid_on_time(DUE, paid, ZoneInfo("America/Lima"))
    assert not paid_on_time(DUE, paid, ZoneInfo("UTC"))


def test_an_early_morning_payment_east_of_utc_is_late() -> None:
    # 00:30 in Amsterdam the day after the due date is still the due date in UTC.
    paid = [datetime(2027, 3, 15, 23, 30, tzinfo=UTC)]
    assert not paid_on_time(DUE, paid, ZoneInfo("Europe/Amsterdam"))
    assert paid_on_time(DUE, paid, ZoneInfo("UTC"))


def test_the_last_of_several_payments_decides() -> None:
    zone = ZoneInfo("Europe/Amsterdam")
    on_time = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    late = datetime(2027, 3, 20, 9, 0, tzinfo=UTC)
    assert paid_on_time(DUE, [on_time], zone)
    assert not paid_on_time(DUE, [on_time, late], zone)


def test_without_a_due_date_or_payments_nothing_is_late() -> None:
    zone = ZoneInfo("UTC")
    assert paid_on_time(None, [datetime(2030, 1, 1, tzinfo=UTC)], zone)
    assert paid_on_time(DUE, [], zone)
