"""Worked examples of time tariffs: increments, connection fee, cost limits, band splits.

Each expected amount is written out as the sum a billing analyst would do by hand.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.rating.domain import CostLimit

from .support import MONDAY_MORNING, call, cost, engine_for, flat_voice_rate, voice_rate

D = Decimal


# -- increments at their boundaries ------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0.00"),  # not connected: nothing, not even one increment
        (1, "0.10"),  # 1 s -> one 60 s increment
        (59, "0.10"),
        (60, "0.10"),
        (61, "0.20"),  # 60 + 60
        (120, "0.20"),
        (121, "0.30"),
    ],
)
def test_60_60_charges_every_started_minute(seconds: int, expected: str) -> None:
    engine = engine_for([flat_voice_rate("0.10")])
    assert cost(engine, MONDAY_MORNING, seconds) == D(expected)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "0.0600"),  # the first 30 s are charged whole: 0.12/min x 30/60
        (30, "0.0600"),
        (31, "0.0720"),  # 30 s + one 6 s step: 0.06 + 0.012
        (36, "0.0720"),
        (37, "0.0840"),  # 30 + 6 + 6
        (60, "0.1200"),  # 30 + 5 x 6: a full minute costs the per-minute price
    ],
)
def test_30_6_charges_a_first_half_minute_then_six_second_steps(
    seconds: int, expected: str
) -> None:
    engine = engine_for([flat_voice_rate("0.12", first=30, step=6, precision=4)])
    assert cost(engine, MONDAY_MORNING, seconds) == D(expected)


def test_31_seconds_at_30_6_is_charged_as_36_seconds() -> None:
    engine = engine_for([flat_voice_rate("0.12", first=30, step=6, precision=4)])
    charge = call(engine, MONDAY_MORNING, 31)
    assert charge.charged_units == 36
    [segment] = charge.segments
    assert (segment.first_increment, segment.increments, segment.increment_seconds) == (
        D("0.0600"),
        1,
        6,
    )
    assert segment.increment_price == D("0.0120")


@pytest.mark.parametrize(("seconds", "expected"), [(1, "0.001"), (61, "0.061"), (3600, "3.600")])
def test_1_1_is_per_second(seconds: int, expected: str) -> None:
    engine = engine_for([flat_voice_rate("0.06", first=1, step=1, precision=3)])
    assert cost(engine, MONDAY_MORNING, seconds) == D(expected)


# -- connection fee -----------------------------------------------------------------------


def test_connection_fee_is_charged_once_per_call() -> None:
    engine = engine_for([flat_voice_rate("0.10", connection="0.05")])
    charge = call(engine, MONDAY_MORNING, 150)  # 3 minutes
    assert charge.connection_fee == D("0.05")
    assert charge.usage_amount == D("0.35")  # 0.05 + 3 x 0.10


def test_connection_fee_is_charged_once_even_when_the_call_is_split() -> None:
    engine = engine_for([voice_rate(connection="0.05")])
    charge = call(engine, "2026-03-02 17:58", 300)
    assert len(charge.segments) == 2
    assert charge.connection_fee == D("0.05")
    assert charge.usage_amount == D("0.05") + sum(s.amount for s in charge.segments)


def test_unconnected_call_pays_no_connection_fee() -> None:
    engine = engine_for([flat_voice_rate("0.10", connection="0.05")])
    assert cost(engine, MONDAY_MORNING, 0) == D("0.00")


# -- minimum and maximum cost ---------------------------------------------------------------


def test_minimum_cost_lifts_a_short_call() -> None:
    engine = engine_for([flat_voice_rate("0.10", min_cost="0.15")])
    charge = call(engine, MONDAY_MORNING, 30)
    assert charge.usage_amount == D("0.15")
    assert charge.cost_limit is CostLimit.MINIMUM
    assert charge.limit_adjustment == D("0.05")  # 0.10 charged by increments, lifted by 0.05


def test_minimum_cost_does_not_apply_to_an_unconnected_call() -> None:
    engine = engine_for([flat_voice_rate("0.10", min_cost="0.15")])
    charge = call(engine, MONDAY_MORNING, 0)
    assert (charge.usage_amount, charge.cost_limit) == (D("0.00"), None)


def test_maximum_cost_caps_a_long_call_including_the_connection_fee() -> None:
    engine = engine_for([flat_voice_rate("0.10", connection="0.05", max_cost="1.00")])
    charge = call(engine, MONDAY_MORNING, 20 * 60)  # 0.05 + 20 x 0.10 = 2.05
    assert charge.usage_amount == D("1.00")
    assert charge.cost_limit is CostLimit.MAXIMUM
    assert charge.limit_adjustment == D("-1.05")


def test_a_call_between_the_limits_is_charged_as_rated() -> None:
    engine = engine_for([flat_voice_rate("0.10", min_cost="0.15", max_cost="1.00")])
    charge = call(engine, MONDAY_MORNING, 5 * 60)
    assert (charge.usage_amount, charge.cost_limit) == (D("0.50"), None)


# -- rounding method and precision ---------------------------------------------------------


@pytest.mark.parametrize(
    ("rounding", "five_seconds", "fifteen_seconds"),
    [
        ("half_up", "0.01", "0.02"),  # 0.005 -> 0.01, 0.015 -> 0.02
        ("half_even", "0.00", "0.02"),  # ties to the even cent
        ("up", "0.01", "0.02"),  # a started cent is charged
        ("down", "0.00", "0.01"),  # truncate
        ("ceiling", "0.01", "0.02"),
        ("floor", "0.00", "0.01"),
    ],
)
def test_rounding_method_of_the_rate(
    rounding: str, five_seconds: str, fifteen_seconds: str
) -> None:
    # 0.06 a minute per second = 0.001 a second; 5 s = 0.005, 15 s = 0.015.
    engine = engine_for([flat_voice_rate("0.06", first=1, step=1, rounding=rounding)])
    assert cost(engine, MONDAY_MORNING, 5) == D(five_seconds)
    assert cost(engine, MONDAY_MORNING, 15) == D(fifteen_seconds)


def test_rounding_adjustment_explains_the_difference() -> None:
    engine = engine_for([flat_voice_rate("0.06", first=1, step=1, rounding="up")])
    charge = call(engine, MONDAY_MORNING, 5)
    assert charge.segments[0].amount == D("0.005")
    assert charge.rounding_adjustment == D("0.005")
    assert charge.usage_amount == D("0.01")


def test_precision_four_keeps_fractions_of_a_cent() -> None:
    engine = engine_for([flat_voice_rate("0.06", first=1, step=1, precision=4)])
    assert cost(engine, MONDAY_MORNING, 5) == D("0.0050")


# -- band splits ----------------------------------------------------------------------------


def test_call_from_17_58_to_18_03_is_split_into_peak_and_offpeak() -> None:
    # Peak 0.10/min, off-peak 0.04/min, 60/60, connection 0.05; Monday 2 March 2026.
    engine = engine_for([voice_rate(connection="0.05")])
    charge = call(engine, "2026-03-02 17:58", 5 * 60)
    peak, offpeak = charge.segments
    assert (peak.band, peak.offset, peak.seconds) == ("peak", 0, 120)
    assert (peak.first_increment, peak.increments, peak.amount) == (D("0.10"), 1, D("0.20"))
    assert (offpeak.band, offpeak.offset, offpeak.seconds) == ("offpeak", 120, 180)
    assert (offpeak.increments, offpeak.amount) == (3, D("0.12"))
    assert charge.usage_amount == D("0.37")  # 0.05 + 0.20 + 0.12


def test_first_increment_is_charged_in_the_band_the_call_starts_in() -> None:
    # 30/6: peak 0.12/min (30 s = 0.06, 6 s = 0.012), off-peak 0.06/min (6 s = 0.006).
    engine = engine_for([voice_rate(first=30, step=6, peak="0.12", offpeak="0.06", precision=4)])
    charge = call(engine, "2026-03-02 17:59:50", 40)
    peak, offpeak = charge.segments
    # The first 30 s (17:59:50-18:00:20) are one peak first increment, whatever the band.
    assert (peak.seconds, peak.first_increment, peak.amount) == (10, D("0.0600"), D("0.0600"))
    # The 10 s left after it, all off-peak, are two 6 s steps: the clock restarts in the band.
    assert (offpeak.seconds, offpeak.increments, offpeak.amount) == (30, 2, D("0.0120"))
    assert charge.usage_amount == D("0.0720")
    assert charge.charged_units == 42


def test_split_restarts_the_increment_clock_at_the_boundary() -> None:
    # 60/60; 17:59:30 for 100 s: 30 s peak + 70 s off-peak.
    # First minute (peak price) covers 17:59:30-18:00:30; the 40 s left in off-peak are one
    # started minute. 2 minutes charged, as the call would be unsplit.
    engine = engine_for([voice_rate()])
    charge = call(engine, "2026-03-02 17:59:30", 100)
    assert [s.band for s in charge.segments] == ["peak", "offpeak"]
    assert charge.usage_amount == D("0.14")  # 0.10 + 0.04
    assert charge.charged_units == 120


def test_split_call_crossing_two_boundaries() -> None:
    # Friday 23:59 -> Saturday: off-peak then weekend; 07:59 Friday -> peak at 08:00.
    engine = engine_for([voice_rate(weekend="0.01")])
    charge = call(engine, "2026-03-06 23:59", 180)
    assert [(s.band, s.seconds) for s in charge.segments] == [("offpeak", 60), ("weekend", 120)]
    assert charge.usage_amount == D("0.06")  # 0.04 + 2 x 0.01


def test_call_within_one_band_is_one_segment() -> None:
    engine = engine_for([voice_rate()])
    charge = call(engine, "2026-03-02 09:00", 3600)
    assert [(s.band, s.seconds) for s in charge.segments] == [("peak", 3600)]


def test_bands_use_the_accounts_time_zone() -> None:
    # 07:30 UTC on Monday: 08:30 in Amsterdam (peak), 02:30 in New York (off-peak).
    engine = engine_for([voice_rate()])
    from datetime import UTC, datetime

    from .support import event

    start = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    amsterdam = engine.rate(event(start, 60, zone="Europe/Amsterdam"))
    new_york = engine.rate(event(start, 60, zone="America/New_York"))
    assert (amsterdam.segments[0].band, amsterdam.gross) == ("peak", D("0.10"))
    assert (new_york.segments[0].band, new_york.gross) == ("offpeak", D("0.04"))


def test_holiday_is_priced_with_its_calendar_band() -> None:
    # Christmas 2026 is a Friday: 10:00 would be peak, the calendar makes it weekend.
    engine = engine_for([voice_rate(weekend="0.01")])
    assert call(engine, "2026-12-25 10:00", 60).segments[0].band == "weekend"
    assert call(engine, "2026-12-24 10:00", 60).segments[0].band == "peak"
    # Midnight into the holiday splits the call.
    charge = call(engine, "2026-12-24 23:59", 120)
    assert [(s.band, s.seconds) for s in charge.segments] == [("offpeak", 60), ("weekend", 60)]


# -- included allowance ----------------------------------------------------------------------


def _with_allowance() -> dict[str, object]:
    return {"allowances": [{"code": "incl", "service": "voice", "units": 6000}]}


def test_allowance_covers_whole_increments_from_the_start() -> None:
    engine = engine_for(
        [flat_voice_rate("0.10", connection="0.05")], version_extra=_with_allowance()
    )
    # 150 s at 60/60 is three minutes; 120 s left covers two, the third is charged.
    charge = call(engine, MONDAY_MORNING, 150, allowance_remaining=120)
    assert (charge.allowance_units, charge.charged_units) == (120, 60)
    assert charge.usage_amount == D("0.15")  # connection 0.05 + one minute 0.10


def test_call_fully_inside_the_allowance_is_free_including_connection() -> None:
    engine = engine_for(
        [flat_voice_rate("0.10", connection="0.05")], version_extra=_with_allowance()
    )
    charge = call(engine, MONDAY_MORNING, 150, allowance_remaining=200)
    assert (charge.allowance_units, charge.charged_units, charge.gross) == (180, 0, D("0.00"))


def test_allowance_smaller_than_the_first_increment_is_not_touched() -> None:
    engine = engine_for([flat_voice_rate("0.10")], version_extra=_with_allowance())
    charge = call(engine, MONDAY_MORNING, 90, allowance_remaining=50)
    assert (charge.allowance_units, charge.gross) == (0, D("0.20"))


def test_allowance_is_ignored_when_the_plan_has_none() -> None:
    engine = engine_for([flat_voice_rate("0.10")])
    charge = call(engine, MONDAY_MORNING, 60, allowance_remaining=6000)
    assert (charge.allowance_units, charge.gross) == (0, D("0.10"))


def test_allowance_limited_to_destinations() -> None:
    allowance = {
        "allowances": [
            {"code": "incl", "service": "voice", "units": 6000, "destinations": ["NL Mobile"]}
        ]
    }
    engine = engine_for(
        [
            flat_voice_rate("0.10"),
            flat_voice_rate("0.20", rate_id="mobile", destination="NL Mobile"),
        ],
        version_extra=allowance,
    )
    landline = call(engine, MONDAY_MORNING, 60, allowance_remaining=600)
    mobile = call(engine, MONDAY_MORNING, 60, allowance_remaining=600, destination="0612345678")
    assert (landline.allowance_units, landline.gross) == (0, D("0.10"))
    assert (mobile.allowance_units, mobile.gross) == (60, D("0.00"))
