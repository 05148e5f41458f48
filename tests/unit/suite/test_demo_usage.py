"""The demo's CDR file: the sample's conference legs, made the demo account's and recent."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from suite.demo import SAMPLE_CDRS, demo_usage_file, money_text

ACCOUNT = "acc_01m80h58xcr7g2dde6q7tp6z0j"
START = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC)
END = START + timedelta(seconds=2)


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_every_record_is_the_demo_account_with_an_id_of_its_own() -> None:
    sample = SAMPLE_CDRS.read_text(encoding="utf-8")
    original = rows(sample.encode())
    rewritten = rows(demo_usage_file(sample, account_id=ACCOUNT, start=START, end=END))
    assert len(rewritten) == len(original) > 0
    assert {row["account_id"] for row in rewritten} == {ACCOUNT}
    assert [row["record_id"] for row in rewritten] == [
        f"{row['record_id']}-tp6z0j" for row in original
    ]
    for before, after in zip(original, rewritten, strict=True):
        for kept in ("service", "destination", "quantity"):
            assert after[kept] == before[kept]


def test_event_times_keep_their_order_inside_the_window() -> None:
    sample = SAMPLE_CDRS.read_text(encoding="utf-8")
    original = [datetime.fromisoformat(r["event_time"]) for r in rows(sample.encode())]
    rewritten = [
        datetime.fromisoformat(r["event_time"])
        for r in rows(demo_usage_file(sample, account_id=ACCOUNT, start=START, end=END))
    ]
    assert all(START < moment <= END for moment in rewritten)
    order = sorted(range(len(original)), key=lambda i: (original[i], i))
    assert [rewritten[i] for i in order] == sorted(rewritten)
    # The latest sample event lands at the end of the window, the earliest at its start.
    assert max(rewritten) == END.replace(microsecond=END.microsecond // 1000 * 1000)
    assert min(rewritten) == datetime(2026, 11, 22, 9, 0, 0, 124000, tzinfo=UTC)


def test_a_window_of_no_time_puts_every_event_just_after_the_start() -> None:
    sample = SAMPLE_CDRS.read_text(encoding="utf-8")
    data = demo_usage_file(sample, account_id=ACCOUNT, start=START, end=START)
    assert {r["event_time"] for r in rows(data)} == {"2026-11-22T09:00:00.124+00:00"}


def test_amounts_show_at_least_cents_and_every_significant_digit() -> None:
    class Amount:
        def __init__(self, units: int, nanos: int) -> None:
            self.units, self.nanos = units, nanos

    assert money_text(Amount(6, 410_000_000)) == "6.41"
    assert money_text(Amount(0, 3_500_000)) == "0.0035"
    assert money_text(Amount(12, 0)) == "12.00"
    assert money_text(Amount(0, 0)) == "0.00"
