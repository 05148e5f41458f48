"""Worked examples of the non-time charge models, allowances and plan fees."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.rating.domain import GraduatedTiers, InvalidEvent, Package, Tier, VolumeTiers
from services.rating.domain.amounts import from_nanos

from .support import engine_for, event

D = Decimal
MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)

# Units 1-100 at 0.10, 101-1000 at 0.08, above 1000 at 0.05.
TIERS = [
    {"up_to": 100, "unit_price": "0.10"},
    {"up_to": 1000, "unit_price": "0.08"},
    {"unit_price": "0.05"},
]


def _rate(service: str, model: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": f"{service}-rate", "service": service, "model": model, **extra}


def _usage(
    service: str, model: dict[str, Any], quantity: int, *, rate_extra: Any = None, **extra: Any
) -> Any:
    engine = engine_for([_rate(service, model, **(rate_extra or {}))], **extra.pop("cat", {}))
    return engine.rate(event(MONDAY, quantity, service=service, destination="", **extra))


def test_per_unit_rounds_each_event_up_to_whole_units() -> None:
    # Data at 0.01 per started MB (10^6 bytes): 1.5 MB -> 2 MB -> 0.02.
    charge = _usage(
        "data", {"kind": "per_unit", "price": "0.01", "unit_size": 1_000_000}, 1_500_000
    )
    assert charge.gross == D("0.02")
    assert [(line.units, line.amount) for line in charge.unit_lines] == [(2, D("0.02"))]


def test_per_unit_counts_events() -> None:
    charge = _usage("sms", {"kind": "per_unit", "price": "0.08"}, 3)
    assert charge.gross == D("0.24")


def test_package_charges_the_event_that_starts_a_new_package() -> None:
    bundle = {"kind": "package", "size": 100, "price": "5.00"}
    assert _usage("sms", bundle, 1).gross == D("5.00")  # first SMS of the cycle opens a bundle
    assert _usage("sms", bundle, 99, usage_to_date=1).gross == D("0.00")  # same bundle
    assert _usage("sms", bundle, 1, usage_to_date=100).gross == D("5.00")  # 101st opens another
    assert _usage("sms", bundle, 250).gross == D("15.00")  # 2.5 bundles -> 3


def test_graduated_tiers_price_each_unit_in_its_own_tier() -> None:
    # 1200 units: 100 x 0.10 + 900 x 0.08 + 200 x 0.05 = 10 + 72 + 10 = 92.00
    charge = _usage("sms", {"kind": "graduated", "tiers": TIERS}, 1200)
    assert charge.gross == D("92.00")
    assert [(line.units, line.price, line.amount) for line in charge.unit_lines] == [
        (100, D("0.1"), D("10")),
        (900, D("0.08"), D("72")),
        (200, D("0.05"), D("10")),
    ]


def test_volume_tiers_price_every_unit_at_the_tier_of_the_total() -> None:
    # 1200 units all at 0.05 = 60.00; 1000 units all at 0.08 = 80.00.
    assert _usage("sms", {"kind": "volume", "tiers": TIERS}, 1200).gross == D("60.00")
    assert _usage("sms", {"kind": "volume", "tiers": TIERS}, 1000).gross == D("80.00")


def test_graduated_event_across_a_tier_boundary_uses_usage_to_date() -> None:
    # 90 used; 20 more: 10 x 0.10 + 10 x 0.08 = 1.80
    charge = _usage("sms", {"kind": "graduated", "tiers": TIERS}, 20, usage_to_date=90)
    assert charge.gross == D("1.80")


def test_volume_event_crossing_a_threshold_credits_the_cycle() -> None:
    # 990 used (990 x 0.08 = 79.20); 20 more makes 1010 x 0.05 = 50.50: the event is -28.70.
    charge = _usage("sms", {"kind": "volume", "tiers": TIERS}, 20, usage_to_date=990)
    assert charge.gross == D("-28.70")


def test_graduated_flat_fee_is_charged_when_its_tier_is_entered() -> None:
    tiers = [{"up_to": 10, "unit_price": "0"}, {"unit_price": "0.50", "flat_fee": "2.00"}]
    model = {"kind": "graduated", "tiers": tiers}
    assert _usage("sms", model, 10).gross == D("0.00")
    assert _usage("sms", model, 1, usage_to_date=10).gross == D("2.50")  # flat + 1 unit
    assert _usage("sms", model, 1, usage_to_date=11).gross == D("0.50")


@pytest.mark.parametrize("model_class", [GraduatedTiers, VolumeTiers])
def test_a_cycle_rated_event_by_event_costs_its_cycle_price(model_class: Any) -> None:
    tiers = (Tier(100, D("0.10")), Tier(1000, D("0.08")), Tier(None, D("0.05")))
    model = model_class(tiers)
    used = 0
    total = 0
    for quantity in (30, 70, 1, 850, 49, 300):
        total += model.price_usage(quantity, used)[0]
        used += quantity
    assert total == model.cycle_price(used)


def test_package_cycle_adds_up() -> None:
    bundle = Package(100, D("5"))
    charged = sum(bundle.price_usage(q, u)[0] for q, u in ((40, 0), (70, 40), (1, 110)))
    assert from_nanos(charged, 2) == D("10.00")  # 111 units: 2 bundles


def test_percentage_of_the_event_amount_plus_a_fixed_fee() -> None:
    model = {"kind": "percentage", "percent": "2.9", "fixed_fee": "0.30"}
    assert _usage("payment", model, 1, amount=D("100.00")).gross == D("3.20")
    # 2.9% of 10.55 = 0.30595 -> 0.31 (half up), + 0.30
    assert _usage("payment", model, 1, amount=D("10.55")).gross == D("0.61")


def test_percentage_needs_an_amount() -> None:
    with pytest.raises(InvalidEvent) as raised:
        _usage("payment", {"kind": "percentage", "percent": "2.9"}, 1)
    assert raised.value.violations[0].field == "amount"


def test_allowance_draws_units_before_charging() -> None:
    allowance = {
        "version_extra": {"allowances": [{"code": "sms-incl", "service": "sms", "units": 100}]}
    }
    charge = _usage(
        "sms", {"kind": "per_unit", "price": "0.08"}, 5, allowance_remaining=3, cat=allowance
    )
    assert (charge.allowance_units, charge.charged_units, charge.gross) == (3, 2, D("0.16"))


def test_minimum_cost_applies_to_unit_charges_too() -> None:
    charge = _usage(
        "data",
        {"kind": "per_unit", "price": "0.001", "unit_size": 1000},
        5000,
        rate_extra={"min_cost": "0.01"},
    )
    assert charge.gross == D("0.01")


def test_recurring_fee_prorated_by_days_with_tax() -> None:
    fees = {
        "fees": [
            {"code": "monthly", "kind": "recurring", "amount": "9.95", "service": "subscription"},
            {"code": "setup", "kind": "one_time", "amount": "25"},
        ]
    }
    engine = engine_for(
        [], version_extra=fees, taxes=[{"code": "VAT", "name": "BTW", "percent": "21"}]
    )
    full = engine.price_fee("conf-basic", "monthly", MONDAY, "NL")
    assert (full.net, full.tax, full.gross) == (D("9.95"), D("2.09"), D("12.04"))
    # 10 days of a 31-day cycle: 9.95 x 10 / 31 = 3.2096... -> 3.21; VAT 0.6741 -> 0.67
    part = engine.price_fee("conf-basic", "monthly", MONDAY, "NL", days_used=10, days_in_cycle=31)
    assert (part.net, part.tax, part.gross) == (D("3.21"), D("0.67"), D("3.88"))
    setup = engine.price_fee("conf-basic", "setup", MONDAY, "EXEMPT")
    assert setup.gross == D("25.00")


def test_destination_is_ignored_by_a_service_priced_without_destinations() -> None:
    engine = engine_for([_rate("data", {"kind": "per_unit", "price": "0.01", "unit_size": 1000})])
    charge = engine.rate(event(MONDAY, 1000, service="data", destination="internet.apn"))
    assert (charge.destination, charge.matched_prefix, charge.gross) == (None, None, D("0.01"))
