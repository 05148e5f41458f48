"""An account's calendar date at an instant, in its zone."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.dunning.domain.model import DunnedAccount, local_date

INSTANT = datetime(2027, 3, 1, 12, tzinfo=UTC)


def test_the_date_depends_on_the_zone() -> None:
    assert local_date(INSTANT, "Pacific/Auckland") == date(2027, 3, 2)  # 01:00 NZDT
    assert local_date(INSTANT, "America/Los_Angeles") == date(2027, 3, 1)
    assert local_date(datetime(2027, 3, 1, 1, tzinfo=UTC), "America/Los_Angeles") == date(
        2027, 2, 28
    )
    assert DunnedAccount("acc_1", time_zone="Pacific/Kiritimati").local_date(
        datetime(2027, 3, 1, 10, tzinfo=UTC)
    ) == date(2027, 3, 2)  # UTC+14


def test_no_zone_or_an_unknown_one_counts_as_utc() -> None:
    for zone in ("", "Mars/Olympus_Mons", "../etc/passwd"):
        assert local_date(INSTANT, zone) == date(2027, 3, 1)
