"""Properties of rating that must hold for every tariff, call and amount."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.money import Rounding, round_decimal
from services.rating.domain import RatedCharge, RatingEngine
from services.rating.domain.amounts import from_nanos, round_div, round_nanos, to_nanos
from services.rating.domain.taxes import TaxRule, apply_taxes

from .support import STANDARD_WEEK, engine_for, event, voice_rate

D = Decimal
# From New Year's Day 2026 through the year: weekdays, weekends, both DST changes, Christmas.
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
ZONES = ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]

increments = st.sampled_from([(60, 60), (30, 6), (1, 1), (60, 1), (30, 30), (45, 15)])
cents = st.integers(min_value=0, max_value=50).map(lambda c: f"{D(c) / 100:.2f}")
# Per-minute prices in steps of 0.06 are a whole 0.001 a second: exact for every increment.
minutes = st.integers(min_value=0, max_value=8).map(lambda k: f"{D(k) * D('0.06'):.2f}")


@lru_cache(maxsize=64)
def _engine(
    first: int,
    step: int,
    peak: str,
    offpeak: str,
    weekend: str,
    connection: str,
    limits: tuple[str | None, str | None],
    precision: int,
) -> RatingEngine:
    extra: dict[str, Any] = {"precision": precision, "rounding": "up"}
    if limits[0]:
        extra["min_cost"] = limits[0]
    if limits[1]:
        extra["max_cost"] = limits[1]
    rate = voice_rate(
        first=first,
        step=step,
        peak=peak,
        offpeak=offpeak,
        weekend=weekend,
        connection=connection,
        **extra,
    )
    vat = {"code": "VAT", "name": "VAT", "percent": "21"}
    levy = {"code": "LEVY", "name": "Levy", "percent": "7.5", "inclusive": True}
    return engine_for([rate], taxes=[vat, levy])


@st.composite
def engines(draw: st.DrawFn) -> RatingEngine:
    first, step = draw(increments)
    limits = draw(st.sampled_from([(None, None), ("0.10", None), (None, "2.00"), ("0.05", "1.00")]))
    return _engine(
        first,
        step,
        draw(minutes),
        draw(minutes),
        draw(minutes),
        draw(cents),
        limits,
        draw(st.sampled_from([2, 4])),
    )


starts = st.integers(min_value=0, max_value=365 * 86_400).map(
    lambda s: YEAR_START + timedelta(seconds=s)
)


def _rate(
    engine: RatingEngine,
    start: datetime,
    seconds: int,
    zone: str = "Europe/Amsterdam",
    region: str = "NL",
) -> RatedCharge:
    return engine.rate(event(start, seconds, zone=zone, region=region))


@settings(max_examples=300, deadline=None)
@given(engines(), starts, st.integers(0, 4 * 3600), st.integers(0, 3600), st.sampled_from(ZONES))
def test_cost_never_decreases_with_duration(
    engine: RatingEngine, start: datetime, seconds: int, more: int, zone: str
) -> None:
    shorter = _rate(engine, start, seconds, zone)
    longer = _rate(engine, start, seconds + more, zone)
    assert longer.gross >= shorter.gross
    assert longer.net >= shorter.net


def _reference_band(local: datetime) -> str:
    """The standard week evaluated directly on a wall-clock time, as a person would."""
    if local.date().isoformat() == "2026-12-25":
        return "weekend"
    if local.weekday() >= 5:
        return "weekend"
    if local.weekday() < 5 and 8 <= local.hour < 18:
        return "peak"
    return "offpeak"


@settings(max_examples=300, deadline=None)
@given(engines(), starts, st.integers(1, 12 * 3600), st.sampled_from(ZONES))
def test_a_split_call_costs_the_sum_of_its_parts(
    engine: RatingEngine, start: datetime, seconds: int, zone: str
) -> None:
    charge = _rate(engine, start, seconds, zone)
    tz = ZoneInfo(zone)
    assert STANDARD_WEEK["default_band"] == "offpeak"
    # The parts cover the call exactly, each in the band its wall-clock time is in.
    assert sum(s.seconds for s in charge.segments) == seconds
    for segment in charge.segments:
        first = (start + timedelta(seconds=segment.offset)).astimezone(tz)
        last = (start + timedelta(seconds=segment.offset + segment.seconds - 1)).astimezone(tz)
        assert _reference_band(first) == segment.band
        assert _reference_band(last) == segment.band
    # The usage charge is the connection fee plus the parts, then rounding and limits.
    parts = charge.connection_fee + sum(s.amount for s in charge.segments)
    assert parts + charge.rounding_adjustment + charge.limit_adjustment == charge.usage_amount
    # Each part is its first increment (first part only) plus whole steps at its band's price.
    assert all(s.first_increment == 0 for s in charge.segments[1:])
    for segment in charge.segments:
        assert segment.amount == segment.first_increment + segment.increments * (
            segment.increment_price
        )


@settings(max_examples=200, deadline=None)
@given(starts, st.integers(1, 12 * 3600), st.sampled_from(ZONES), minutes, minutes, minutes)
def test_per_second_tariff_costs_each_parts_seconds_at_its_band_price(
    start: datetime, seconds: int, zone: str, peak: str, offpeak: str, weekend: str
) -> None:
    # 1/1 with the same price per second first and next: no rounding of time at all, so a
    # split call is exactly each band's seconds at that band's price.
    engine = _engine(1, 1, peak, offpeak, weekend, "0.00", (None, None), 4)
    charge = _rate(engine, start, seconds, zone, region="EXEMPT")
    per_second = {"peak": D(peak) / 60, "offpeak": D(offpeak) / 60, "weekend": D(weekend) / 60}
    exact = sum((per_second[s.band] * s.seconds for s in charge.segments), D(0))
    assert charge.usage_amount == exact.quantize(D("0.0001"), rounding="ROUND_UP")


@settings(max_examples=150, deadline=None)
@given(engines(), starts, st.integers(0, 2 * 3600), st.sampled_from(ZONES))
def test_units_for_the_cost_of_n_units_is_at_least_n(
    engine: RatingEngine, start: datetime, seconds: int, zone: str
) -> None:
    request = event(start, 2 * 3600, zone=zone, region="NL")
    price = _rate(engine, start, seconds, zone).gross
    assert engine.units_for_amount(request, price).units >= seconds


@settings(max_examples=150, deadline=None)
@given(engines(), starts, st.integers(0, 500).map(lambda c: D(c) / 100), st.sampled_from(ZONES))
def test_what_an_amount_buys_costs_no_more_than_the_amount(
    engine: RatingEngine, start: datetime, amount: Decimal, zone: str
) -> None:
    request = event(start, 2 * 3600, zone=zone, region="NL")
    answer = engine.units_for_amount(request, amount)
    assert answer.charge.gross <= amount
    assert _rate(engine, start, answer.units, zone).gross == answer.charge.gross
    if answer.units < 2 * 3600:  # one more unit would cost more than the amount
        assert _rate(engine, start, answer.units + 1, zone).gross > amount


@given(st.integers(-(10**15), 10**15), st.integers(0, 9), st.sampled_from(list(Rounding)))
def test_integer_rounding_agrees_with_decimal_rounding(
    nanos: int, places: int, rounding: Rounding
) -> None:
    exact = from_nanos(nanos, 9)
    assert from_nanos(round_nanos(nanos, places, rounding), places) == round_decimal(
        exact, places, rounding
    )


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**6), st.sampled_from(list(Rounding)))
def test_round_div_agrees_with_decimal(
    numerator: int, denominator: int, rounding: Rounding
) -> None:
    exact = D(numerator) / D(denominator)  # 28 digits: enough to decide every tie here
    assert round_div(numerator, denominator, rounding) == int(round_decimal(exact, 0, rounding))


@given(
    st.integers(-(10**9), 10**9).map(lambda c: D(c) / 100),
    st.lists(st.tuples(st.integers(0, 2500).map(lambda p: D(p) / 100), st.booleans()), max_size=4),
    st.sampled_from(list(Rounding)),
)
def test_net_plus_taxes_is_gross(
    amount: Decimal, rates: list[tuple[Decimal, bool]], rounding: Rounding
) -> None:
    rules = [
        TaxRule(f"T{i}", "tax", percent, inclusive) for i, (percent, inclusive) in enumerate(rates)
    ]
    net, taxes, gross = apply_taxes(rules, to_nanos(amount), 2, rounding)
    assert net + sum(taxes) == gross
    for amount_nanos in (net, gross, *taxes):
        assert amount_nanos % 10_000_000 == 0  # whole cents
    exclusive = sum(t for t, r in zip(taxes, rules, strict=True) if not r.inclusive)
    assert gross == to_nanos(amount) + exclusive
