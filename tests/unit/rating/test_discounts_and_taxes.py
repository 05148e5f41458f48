"""Discounts and promotions, then taxes: several per line, inclusive and exclusive."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.common.money import Rounding
from services.rating.domain import DiscountKind, TaxRule, UnknownDiscount, UnknownReward
from services.rating.domain.amounts import from_nanos, to_nanos
from services.rating.domain.discounts import UsesPer
from services.rating.domain.errors import InvalidCatalog
from services.rating.domain.taxes import apply_taxes

from .support import MONDAY_MORNING, call, engine_for, flat_voice_rate, local, voice_rate

D = Decimal
VAT = {"code": "VAT", "name": "BTW", "percent": "21"}
LEVY = {"code": "LEVY", "name": "Telecom levy", "percent": "2"}


def _engine(discounts: list[dict[str, Any]], on_plan: list[str], **extra: Any) -> Any:
    return engine_for(
        [voice_rate(connection="0.05")],
        discounts=discounts,
        version_extra={"discounts": on_plan},
        **extra,
    )


# -- discounts ------------------------------------------------------------------------------


def test_percentage_discount_on_the_rated_call() -> None:
    # 17:58-18:03 costs 0.37; 10% off is 0.037 -> 0.04 (half up): 0.33.
    engine = _engine([{"code": "TEN", "kind": "percent", "value": "10"}], ["TEN"])
    charge = call(engine, "2026-03-02 17:58", 300)
    assert (charge.usage_amount, charge.discount, charge.net) == (D("0.37"), D("0.04"), D("0.33"))
    [line] = charge.discounts
    assert (line.code, line.kind, line.value, line.amount) == (
        "TEN",
        DiscountKind.PERCENT,
        D("10"),
        D("0.04"),
    )


def test_amount_discount_never_makes_a_charge_negative() -> None:
    engine = _engine([{"code": "HALF-EURO", "kind": "amount", "value": "0.50"}], ["HALF-EURO"])
    charge = call(engine, "2026-03-02 17:58", 300)
    assert (charge.discount, charge.net) == (D("0.37"), D("0.00"))


def test_discounts_apply_in_order_each_on_what_is_left() -> None:
    discounts = [
        {"code": "OFF10C", "kind": "amount", "value": "0.10"},
        {"code": "HALF", "kind": "percent", "value": "50"},
    ]
    engine = _engine(discounts, ["OFF10C", "HALF"])
    charge = call(engine, "2026-03-02 17:58", 300)  # 0.37 - 0.10 = 0.27; half: 0.135 -> 0.14
    assert [line.amount for line in charge.discounts] == [D("0.10"), D("0.14")]
    assert charge.net == D("0.13")


def test_time_limited_promotion_applies_only_inside_its_window() -> None:
    promo = {
        "code": "MARCH",
        "kind": "percent",
        "value": "50",
        "valid_from": "2026-03-01",
        "valid_to": "2026-04-01",
    }
    engine = _engine([promo], ["MARCH"])
    # Validity is in UTC: 23:00 in Amsterdam on 31 March is 21:00 UTC, still March.
    # Off-peak 0.05 + 0.04 = 0.09, half is 0.045 -> 0.05 (half up).
    assert call(engine, "2026-03-31 23:00", 60).discount == D("0.05")
    assert call(engine, "2026-04-01 10:00", 60).discount == D("0.00")


def test_count_limited_promotion_needs_remaining_uses() -> None:
    promo = {"code": "FIRST3", "kind": "percent", "value": "100", "max_uses": 3}
    engine = _engine([promo], [])
    held = {"promotions": ("FIRST3",)}
    assert call(engine, MONDAY_MORNING, 60, **held).net == D("0.15")  # no counter: no discount
    assert call(engine, MONDAY_MORNING, 60, discount_uses={"FIRST3": 0}, **held).net == D("0.15")
    charge = call(engine, MONDAY_MORNING, 60, discount_uses={"FIRST3": 1}, **held)
    assert charge.net == D("0.00")
    assert charge.discounts[0].counted  # the caller records the use


def test_uses_are_counted_per_account_unless_the_catalog_says_per_cycle() -> None:
    per_cycle = {"code": "SMS2", "kind": "percent", "value": "100", "max_uses": 2}
    engine = _engine([{**per_cycle, "uses_per": "cycle"}, {**per_cycle, "code": "LIFE"}], [])
    assert [d.uses_per for d in engine.catalog.discounts] == [UsesPer.CYCLE, UsesPer.ACCOUNT]


def test_uses_per_must_be_known_and_needs_max_uses() -> None:
    wrong = {"code": "X", "kind": "percent", "value": "10", "max_uses": 2, "uses_per": "week"}
    pointless = {"code": "Y", "kind": "percent", "value": "10", "uses_per": "cycle"}
    with pytest.raises(InvalidCatalog) as failure:
        _engine([wrong, pointless], [])
    assert {v.field: v.description for v in failure.value.violations} == {
        "discounts[0].uses_per": "must be one of account, cycle",
        "discounts[1].uses_per": "counts uses of max_uses, which is not set",
    }


def test_discount_limited_to_a_service_skips_others() -> None:
    promo = {"code": "SMSONLY", "kind": "percent", "value": "50", "services": ["sms"]}
    engine = _engine([promo], ["SMSONLY"])
    assert call(engine, MONDAY_MORNING, 60).discount == D("0.00")


def test_unknown_promotion_code_is_an_error() -> None:
    engine = _engine([], [])
    with pytest.raises(UnknownDiscount):
        call(engine, MONDAY_MORNING, 60, promotions=("NOPE",))


def test_referral_reward_is_a_catalog_item() -> None:
    engine = _engine([], [])
    reward = engine.referral_reward("REFER", local("2026-05-01 12:00"))
    assert (reward.points, reward.unit) == (500, "points")
    with pytest.raises(UnknownReward):
        engine.referral_reward("OTHER", local("2026-05-01 12:00"))


# -- taxes ----------------------------------------------------------------------------------


def _taxed(taxes: list[dict[str, Any]], minute: str, minutes: int = 1, **extra: Any) -> Any:
    engine = engine_for([flat_voice_rate(minute, **extra)], taxes=taxes)
    return call(engine, MONDAY_MORNING, minutes * 60, region="NL")


def test_two_exclusive_taxes_are_added_and_each_shown() -> None:
    charge = _taxed([VAT, LEVY], "10.00")
    assert (charge.net, charge.tax, charge.gross) == (D("10.00"), D("2.30"), D("12.30"))
    assert [(t.code, t.percent, t.inclusive, t.amount) for t in charge.taxes] == [
        ("VAT", D("21"), False, D("2.10")),
        ("LEVY", D("2"), False, D("0.20")),
    ]


def test_inclusive_tax_is_taken_out_of_the_price() -> None:
    charge = _taxed([{**VAT, "inclusive": True}], "12.10")
    assert (charge.net, charge.tax, charge.gross) == (D("10.00"), D("2.10"), D("12.10"))


def test_two_inclusive_taxes_share_the_price() -> None:
    # 12.30 includes 21% + 2% of 10.00.
    charge = _taxed([{**VAT, "inclusive": True}, {**LEVY, "inclusive": True}], "12.30")
    assert [t.amount for t in charge.taxes] == [D("2.10"), D("0.20")]
    assert (charge.net, charge.gross) == (D("10.00"), D("12.30"))


def test_inclusive_rounding_lands_in_the_net_so_lines_add_up() -> None:
    # 1.00 including 21%: tax 1.00 x 21/121 = 0.17355 -> 0.17, net 0.83.
    charge = _taxed([{**VAT, "inclusive": True}], "1.00")
    assert (charge.net, charge.tax, charge.gross) == (D("0.83"), D("0.17"), D("1.00"))


def test_inclusive_and_exclusive_taxes_on_one_line() -> None:
    # 1.21 includes 21% VAT (net 1.00); a 5% exclusive surcharge is added on the net.
    surcharge = {"code": "SUR", "name": "Surcharge", "percent": "5"}
    charge = _taxed([{**VAT, "inclusive": True}, surcharge], "1.21")
    assert [t.amount for t in charge.taxes] == [D("0.21"), D("0.05")]
    assert (charge.net, charge.gross) == (D("1.00"), D("1.26"))


def test_tax_rounding_follows_the_region() -> None:
    # VAT on 0.10 is 0.021; at precision 3 it is kept, at 2 it rounds by the region's rule.
    exact = _taxed([VAT], "0.10", precision=3)
    assert exact.tax == D("0.021")
    engine = engine_for([flat_voice_rate("0.50")], taxes=[VAT], tax_rounding="half_even")
    # 21% of 0.50 = 0.105: half-even -> 0.10, half-up (default) -> 0.11.
    assert call(engine, MONDAY_MORNING, 60, region="NL").tax == D("0.10")
    assert _taxed([VAT], "0.50").tax == D("0.11")


def test_tax_applies_only_to_its_services_and_while_valid() -> None:
    sms_only = {**LEVY, "services": ["sms"]}
    old_vat = {**VAT, "percent": "19", "valid_to": "2026-03-01"}
    new_vat = {**VAT, "code": "VAT21", "valid_from": "2026-03-01"}
    charge = _taxed([sms_only, old_vat, new_vat], "10.00")
    assert [(t.code, t.amount) for t in charge.taxes] == [("VAT21", D("2.10"))]


def test_exempt_region_has_no_tax_lines() -> None:
    engine = engine_for([flat_voice_rate("1.00")], taxes=[VAT])
    charge = call(engine, MONDAY_MORNING, 60)  # region EXEMPT
    assert (charge.taxes, charge.gross) == ([], D("1.00"))


@pytest.mark.parametrize("priced", ["0.01", "0.99", "1.00", "12.34", "99999.99", "-5.55"])
def test_net_plus_taxes_is_gross_to_the_cent(priced: str) -> None:
    rules = [
        TaxRule("A", "A", D("21"), inclusive=True),
        TaxRule("B", "B", D("7.5"), True),
        TaxRule("C", "C", D("2")),
    ]
    net, taxes, gross = apply_taxes(rules, to_nanos(D(priced)), 2, Rounding.HALF_UP)
    assert net + sum(taxes) == gross
    assert from_nanos(gross, 2) == D(priced) + from_nanos(taxes[2], 2)
