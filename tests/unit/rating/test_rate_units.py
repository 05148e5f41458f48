"""Prices per rate unit with a separate charging increment (issue 9 item 6, ADR 0041).

"0.02 EUR a minute, charged per second": a price per 60 s rate unit, the seconds
counted in 1 s increments. Nothing per increment is exact (0.02/60 never ends),
so the charge is the exact fraction, rounded once at the end by the rate's rule.
Every expected amount is worked out by hand in the comment next to it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.rating.domain import AmountBasis, RatingEngine, parse_catalog
from services.rating.domain.document import check_catalog

from .support import MONDAY_MORNING, call, catalog_document, cost, engine_for, event, local

D = Decimal


def per_second(unit_prices: dict[str, str], *, rate_unit: int = 60, **extra: Any) -> dict[str, Any]:
    """A voice rate to NL priced per ``rate_unit`` seconds, charged per second."""
    return {
        "id": "nl",
        "service": "voice",
        "destination": "NL",
        "rate_unit": rate_unit,
        "first_increment": 1,
        "next_increment": 1,
        "unit_prices": unit_prices,
        **extra,
    }


def per_minute_per_second(minute: str, **extra: Any) -> dict[str, Any]:
    """The same written as ``per_minute`` with 1/1 increments (not exact per increment)."""
    return {
        "id": "nl",
        "service": "voice",
        "destination": "NL",
        "first_increment": 1,
        "next_increment": 1,
        "per_minute": {"*": minute},
        **extra,
    }


@pytest.mark.parametrize(
    ("seconds", "precision", "rounding", "expected"),
    [
        (61, 2, "half_up", "0.02"),  # 61 x 0.02 / 60 = 0.020333.. -> 0.02
        (61, 4, "half_up", "0.0203"),  # 0.020333.. -> 0.0203
        (61, 2, "up", "0.03"),  # 0.020333.. rounded up -> 0.03
        (61, 6, "half_up", "0.020333"),
        (61, 6, "ceiling", "0.020334"),
        (90, 2, "half_up", "0.03"),  # 90 x 0.02 / 60 = 0.03 exactly
        (75, 2, "half_up", "0.03"),  # 0.025 exactly: half up -> 0.03
        (75, 2, "half_even", "0.02"),  # 0.025: half even -> 0.02
        (74, 2, "half_up", "0.02"),  # 0.024666..
        (1, 2, "up", "0.01"),  # 0.000333.. up -> 0.01
        (1, 2, "half_up", "0.00"),  # 0.000333.. -> 0.00
        (3600, 2, "half_up", "1.20"),  # 60 minutes x 0.02
    ],
)
def test_a_per_minute_price_charged_per_second_is_rounded_once(
    seconds: int, precision: int, rounding: str, expected: str
) -> None:
    for rate in (
        per_second({"*": "0.02"}, precision=precision, rounding=rounding),
        per_minute_per_second("0.02", precision=precision, rounding=rounding),
    ):
        engine = engine_for([rate])
        assert cost(engine, MONDAY_MORNING, seconds) == D(expected), rate


def test_the_breakdown_adds_up_with_the_one_rounding() -> None:
    # 59 s at 0.05 a minute: 2.95 / 60 = 0.0491666.. -> 0.05 (half up, cents).
    engine = engine_for([per_second({"*": "0.05"}, connection_fee="0.05")])
    charge = call(engine, MONDAY_MORNING, 59)
    assert charge.usage_amount == D("0.10")  # 0.05 + 0.0491666.. = 0.0991666.. -> 0.10
    assert charge.charged_units == 59
    [segment] = charge.segments
    assert segment.amount == D("0.049166667")  # shown to nine places
    assert segment.increment_price == D("0.000833333")  # 0.05 / 60 per second, shown
    assert charge.rounding_adjustment == D("0.000833333")
    assert charge.connection_fee + segment.amount + charge.rounding_adjustment == D("0.10")


def test_a_call_split_by_bands_is_rounded_once_not_per_segment() -> None:
    # 12 s in peak and 12 s off-peak at 0.02 a minute: 0.004 + 0.004 = 0.008 -> 0.01.
    # Rounding each segment to cents would give 0.00 + 0.00.
    engine = engine_for([per_second({"peak": "0.02", "*": "0.02"})])
    charge = call(engine, "2026-03-02 17:59:48", 24)
    assert [(s.band, s.seconds) for s in charge.segments] == [("peak", 12), ("offpeak", 12)]
    assert [s.amount for s in charge.segments] == [D("0.004"), D("0.004")]
    assert charge.gross == D("0.01")


def test_band_prices_per_rate_unit_are_exact_across_the_boundary() -> None:
    # 30 s peak at 0.06/min = 0.03; 31 s off-peak at 0.03/min = 0.0155; 0.0455 -> 0.05.
    engine = engine_for(
        [per_second({"peak": "0.06", "offpeak": "0.03", "weekend": "0.03"}, precision=3)]
    )
    # 0.0455 at three places, half up -> 0.046.
    assert cost(engine, "2026-03-02 17:59:30", 61) == D("0.046")


def test_coarser_increments_than_the_rate_unit_need_no_fraction() -> None:
    # 0.07 a minute charged per started 30 s: 61 s -> 90 s = 0.105 -> 0.11 (half up).
    engine = engine_for(
        [{**per_second({"*": "0.07"}), "first_increment": 30, "next_increment": 30}]
    )
    charge = call(engine, MONDAY_MORNING, 61)
    assert charge.charged_units == 90
    assert charge.gross == D("0.11")


def test_a_connection_fee_can_differ_by_time_band() -> None:
    rate = per_second({"*": "0.02"}, connection_fee={"peak": "0.10", "*": "0.05"}, precision=4)
    engine = engine_for([rate])
    # Peak start: 0.10 + 61 x 0.02 / 60 = 0.1203333.. -> 0.1203.
    peak = call(engine, MONDAY_MORNING, 61)
    assert (peak.connection_fee, peak.gross) == (D("0.10"), D("0.1203"))
    # Off-peak start (20:00): 0.05 + 0.0203333.. -> 0.0703.
    evening = call(engine, "2026-03-02 20:00", 61)
    assert (evening.connection_fee, evening.gross) == (D("0.05"), D("0.0703"))
    # The band the call starts in decides: 17:59:30 is peak, whatever follows.
    assert call(engine, "2026-03-02 17:59:30", 120).connection_fee == D("0.10")
    # A call fully drawn from nothing still pays; a zero-second call pays nothing.
    assert call(engine, MONDAY_MORNING, 0).gross == D("0")


def test_band_connection_fees_work_with_per_increment_prices_too() -> None:
    rate = {
        "id": "nl",
        "service": "voice",
        "destination": "NL",
        "first_increment": 60,
        "next_increment": 60,
        "connection_fee": {"weekend": "0", "*": "0.05"},
        "prices": {"*": {"first": "0.10", "next": "0.10"}},
    }
    engine = engine_for([rate])
    assert cost(engine, MONDAY_MORNING, 60) == D("0.15")
    assert cost(engine, "2026-03-07 10:00", 60) == D("0.10")  # Saturday: no set-up fee


def test_per_unit_prices_may_be_charged_in_finer_increments() -> None:
    data = {
        "id": "data",
        "service": "data",
        # 0.01 per MB (10^6 bytes), charged per started KB (1,000 bytes).
        "model": {"kind": "per_unit", "price": "0.01", "unit_size": 1_000_000, "increment": 1000},
        "precision": 4,
    }
    sms = {
        "id": "sms",
        "service": "sms",
        # 0.50 per 1,000 messages, charged per message.
        "model": {"kind": "per_unit", "price": "0.50", "unit_size": 1000, "increment": 1},
    }
    engine = engine_for([data, sms])
    start = local(MONDAY_MORNING)
    # 1,500,500 bytes -> 1,501 KB = 1,501,000 bytes x 0.01 / 10^6 = 0.01501 -> 0.0150.
    charge = engine.rate(event(start, 1_500_500, service="data", destination=""))
    assert charge.gross == D("0.0150")
    [line] = charge.unit_lines
    assert (line.units, line.price, line.amount) == (1_501_000, D("0.01"), D("0.01501"))
    assert line.amount + charge.rounding_adjustment == charge.usage_amount
    # 33 messages x 0.50 / 1000 = 0.0165 -> 0.02 (cents, half up); 1 message 0.0005 -> 0.00.
    assert engine.rate(event(start, 33, service="sms", destination="")).gross == D("0.02")
    assert engine.rate(event(start, 1, service="sms", destination="")).gross == D("0.00")


def test_units_for_amount_and_quote_agree_with_rating() -> None:
    engine = engine_for([per_second({"*": "0.02"})])
    question = event(local(MONDAY_MORNING), 3600)
    # At most 0.02: 74 s cost 0.024666.. -> 0.02; 75 s cost 0.025 -> 0.03.
    answer = engine.units_for_amount(question, D("0.02"), AmountBasis.GROSS)
    assert answer.units == 74
    assert answer.charge.gross == D("0.02")
    assert engine.quote(event(local(MONDAY_MORNING), 75)).gross == D("0.03")
    assert cost(engine, MONDAY_MORNING, 74) == answer.charge.gross
    # A euro buys 3,000 s (3,000 x 0.02 / 60 = 1.00), 3,014 s still rounds to 1.00.
    assert engine.units_for_amount(question, D("1.00")).units == 3014


def test_document_problems_name_the_field() -> None:
    def problems(rate: dict[str, Any]) -> dict[str, str]:
        return {v.field: v.description for v in check_catalog(catalog_document([rate]))}

    here = "plans[0].versions[0].rates[0]"
    without_unit = per_second({"*": "0.02"})
    del without_unit["rate_unit"]
    assert "is required" in problems(without_unit)[f"{here}.rate_unit"]
    assert "at least 1" in problems(per_second({"*": "0.02"}, rate_unit=0))[f"{here}.rate_unit"]
    with_prices = {**per_minute_per_second("0.02"), "rate_unit": 60}
    assert "unit_prices" in problems(with_prices)[f"{here}.rate_unit"]
    both = {**per_second({"*": "0.02"}), "per_minute": {"*": "0.02"}}
    assert "give one of" in problems(both)[f"{here}.unit_prices"]
    assert "floats" in problems(per_second({"*": 0.02}))[f"{here}.unit_prices.*"]  # type: ignore[dict-item]
    no_band = per_second({"peak": "0.02", "offpeak": "0.01", "weekend": "0.01"})
    no_band["connection_fee"] = {"holiday": "0.10"}
    assert "no price" in problems(no_band)[f"{here}.connection_fee.holiday"]
    unpriced = per_second({"peak": "0.02"})
    assert "offpeak" in problems(unpriced)[f"{here}.prices"]
    bad_increment = {"kind": "per_unit", "price": "0.01", "unit_size": 1000, "increment": 0}
    data = {"id": "data", "service": "data", "model": bad_increment}
    assert "at least 1" in problems(data)[f"{here}.model.increment"]


def test_exact_per_minute_prices_keep_their_per_increment_form() -> None:
    # 0.12 a minute in 6 s steps is 0.012 per step: the breakdown shows that, as before.
    catalog = parse_catalog(catalog_document([per_minute_per_second("0.12")]))
    rate = catalog.plans[0].versions[0].rates[0]
    assert rate.pricing.rate_unit is None  # type: ignore[union-attr]
    engine = RatingEngine(catalog)
    assert call(engine, MONDAY_MORNING, 61).segments[0].increment_price == D("0.002")
