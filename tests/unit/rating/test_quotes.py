"""Real-time quotes for charging (RAT-8): the price of N units, the units an amount buys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.rating.domain import AmountBasis, InvalidEvent

from .support import MONDAY_MORNING, engine_for, event, flat_voice_rate, local, voice_rate

D = Decimal
VAT = {"code": "VAT", "name": "BTW", "percent": "21"}


def _buys(
    amount: str,
    *,
    start: str = MONDAY_MORNING,
    requested: int = 3600,
    basis: AmountBasis = AmountBasis.GROSS,
    region: str = "EXEMPT",
    **rate: Any,
) -> int:
    engine = engine_for([voice_rate(connection="0.05", **rate)], taxes=[VAT])
    request = event(local(start), requested, region=region)
    return engine.units_for_amount(request, D(amount), basis).units


def test_quote_is_the_price_of_the_requested_units() -> None:
    engine = engine_for([flat_voice_rate("0.10", connection="0.05")])
    assert engine.quote(event(local(MONDAY_MORNING), 120)).gross == D("0.25")


@pytest.mark.parametrize(
    ("amount", "seconds"),
    [
        ("0.04", 0),  # less than connection + first minute (0.15)
        ("0.15", 60),
        ("0.24", 60),
        ("0.25", 120),  # 0.05 + 2 x 0.10
        ("5.95", 3540),  # 0.05 + 59 minutes
        ("100", 3600),  # never more than requested
    ],
)
def test_units_for_amount_respects_whole_increments(amount: str, seconds: int) -> None:
    assert _buys(amount) == seconds


def test_units_for_amount_with_tax_compares_the_gross_amount() -> None:
    # Two minutes: net 0.25, VAT 0.05 (0.0525 -> 0.05), gross 0.30.
    assert _buys("0.30", region="NL") == 120
    assert _buys("0.29", region="NL") == 60
    assert _buys("0.25", region="NL", basis=AmountBasis.NET) == 120


def test_units_for_amount_follows_the_band_split() -> None:
    # From 17:58: two peak minutes (0.05 + 0.20), then off-peak at 0.04 a minute.
    # 0.40 buys 0.25 + 3 x 0.04 = 0.37 -> 5 minutes; a sixth would make 0.41.
    assert _buys("0.40", start="2026-03-02 17:58") == 300


def test_units_for_amount_returns_the_charge_of_those_units() -> None:
    engine = engine_for([flat_voice_rate("0.10", connection="0.05")])
    answer = engine.units_for_amount(event(local(MONDAY_MORNING), 3600), D("0.30"))
    assert (answer.units, answer.charge.gross) == (120, D("0.25"))


def test_units_for_amount_with_volume_tiers_finds_the_cheaper_tier() -> None:
    # All units at 0.10 up to 100, all at 0.05 above: 150 units cost 7.50, 100 cost 10.00.
    tiers = [{"up_to": 100, "unit_price": "0.10"}, {"unit_price": "0.05"}]
    engine = engine_for(
        [{"id": "sms", "service": "sms", "model": {"kind": "volume", "tiers": tiers}}]
    )
    request = event(local(MONDAY_MORNING), 1000, service="sms", destination="")
    assert engine.units_for_amount(request, D("9.00")).units == 180  # 180 x 0.05 = 9.00
    assert engine.units_for_amount(request, D("5.00")).units == 50  # 100 would cost 10.00
    assert engine.units_for_amount(request, D("5.05")).units == 101  # past the threshold


def test_negative_amount_is_refused() -> None:
    engine = engine_for([flat_voice_rate("0.10")])
    with pytest.raises(InvalidEvent):
        engine.units_for_amount(event(local(MONDAY_MORNING), 60), D("-1"))
