"""Worked invoices a billing analyst can check by hand (cycles, proration, usage, VAT)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from services.common.money import Money
from services.invoicing.domain.arithmetic import TaxedAmount, net_from_inclusive, totals
from services.invoicing.domain.builder import (
    Charges,
    FeeQuote,
    FeeTiming,
    Pricing,
    RatedUsage,
    Segment,
    TaxRate,
    build_lines,
)
from services.invoicing.domain.cycles import cycle_containing
from services.invoicing.domain.model import LineKind, PendingItem

AMS = "Europe/Amsterdam"
VAT21 = TaxRate("S", Decimal(21))
T0 = datetime(2027, 1, 1, tzinfo=UTC)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def fee(code: str, amount: str, timing: FeeTiming = FeeTiming.IN_ADVANCE) -> FeeQuote:
    return FeeQuote(code, code, code, eur(amount), timing, "S", Decimal(21))


PRICING = Pricing(
    {
        "basic": [fee("basic", "31.00")],
        "pro": [fee("pro", "62.00"), fee("activation", "25.00", FeeTiming.ONE_TIME)],
        "tv": [fee("tv", "10.00")],
        "meter": [fee("meter", "30.00", FeeTiming.IN_ARREARS)],
    },
    {"sms": TaxRate("S", Decimal(9))},
    VAT21,
)


def pending(
    plan: str, *, credit: bool, days: int, cycle_days: int, kind: LineKind = LineKind.PRORATION
) -> PendingItem:
    return PendingItem(
        pending_item_id=f"pit_{plan}_{credit}",
        account_id="acc_1",
        kind=kind,
        description="",
        service=plan,
        create_time=T0,
        fee_plan_code=plan,
        subscription_id="sub_1",
        days_used=days,
        days_in_cycle=cycle_days,
        credit=credit,
    )


def test_march_in_advance_with_a_plan_change_and_an_add_on_removed() -> None:
    """BCD 1, Amsterdam. March has 31 days.

    - 11 March: basic (31.00/month) -> pro (62.00/month). Days left, 11 to 31
      March: 21. Credit 31.00 x 21/31 = 21.00; charge 62.00 x 21/31 = 42.00.
    - 16 March: add-on tv (10.00/month) removed. 16 days left:
      credit 10.00 x 16/31 = 5.1612... -> 5.16.
    - The invoice of 1 April carries pro for April in advance (62.00) and those
      three items: net 62.00 - 21.00 + 42.00 - 5.16 = 77.84;
      VAT 21 % of 77.84 = 16.3464 -> 16.35; total 94.19.
    """
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)
    april = march.next()
    change = datetime(2027, 3, 11, 9, 30, tzinfo=UTC)
    removal = datetime(2027, 3, 16, 14, 0, tzinfo=UTC)
    assert (march.days_from(change), march.days_from(removal)) == (21, 16)
    source = Charges(
        "acc_1",
        segments=[
            Segment("sub_1", "basic", False, 1, datetime(2026, 12, 1, tzinfo=UTC), change),
            Segment("sub_1", "pro", False, 1, change, None),
            Segment("sub_1", "tv", True, 1, datetime(2026, 12, 1, tzinfo=UTC), removal),
        ],
        pending=[
            pending("basic", credit=True, days=21, cycle_days=31),
            pending("pro", credit=False, days=21, cycle_days=31),
            pending("tv", credit=True, days=16, cycle_days=31),
        ],
    )
    built = build_lines(
        boundary=april,
        ended=march,
        currency="EUR",
        sources=[source],
        pricing=PRICING,
        billing_account_id="acc_1",
    )
    nets = [(line.kind, line.plan_code, line.net_amount) for line in built.lines]
    assert nets == [
        (LineKind.RECURRING, "pro", eur("62.00")),
        (LineKind.PRORATION, "basic", eur("-21.00")),
        (LineKind.PRORATION, "pro", eur("42.00")),
        (LineKind.PRORATION, "tv", eur("-5.16")),
    ]
    result = totals([line.taxed() for line in built.lines], "EUR")
    assert (result.net, result.tax, result.gross) == (eur("77.84"), eur("16.35"), eur("94.19"))


def test_in_arrears_fee_prorated_by_the_days_it_ran() -> None:
    """meter (30.00/month in arrears) from 29 March in a DST month: 3/31 -> 2.90."""
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)
    start = datetime(2027, 3, 29, 6, 0, tzinfo=UTC)
    source = Charges("acc_1", segments=[Segment("sub_2", "meter", False, 1, start, None)])
    built = build_lines(
        boundary=march.next(),
        ended=march,
        currency="EUR",
        sources=[source],
        pricing=PRICING,
        billing_account_id="acc_1",
    )
    assert [(ln.description, ln.net_amount) for ln in built.lines] == [
        ("meter (3/31 days)", eur("2.90"))
    ]


def test_usage_is_aggregated_per_service_and_destination_and_rounded_once() -> None:
    """Three calls of 0.0149, 0.0149, 0.0149 to NL mobile: the detail sums to
    0.0447, the line is 0.04 (rounded once, not 0.01 + 0.01 + 0.01 = 0.03);
    two SMS at 9 % VAT make their own line and their own VAT group."""
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)
    at = datetime(2027, 3, 5, tzinfo=UTC)
    usage = [
        RatedUsage(
            f"r{i}", "acc_1", "voice", "NL mobile", Decimal(60), "SEC", Decimal("0.0149"), at
        )
        for i in range(3)
    ] + [
        RatedUsage(f"s{i}", "acc_1", "sms", "", Decimal(1), "C62", Decimal("0.075"), at)
        for i in range(2)
    ]
    built = build_lines(
        boundary=march.next(),
        ended=march,
        currency="EUR",
        sources=[Charges("acc_1", usage=usage)],
        pricing=PRICING,
        billing_account_id="acc_1",
    )
    by_service = {line.service: line for line in built.lines}
    voice, sms = by_service["voice"], by_service["sms"]
    assert (voice.unrounded_amount, voice.net_amount, voice.detail_count) == (
        Decimal("0.0447"),
        eur("0.04"),
        3,
    )
    assert (sms.net_amount, sms.tax_rate) == (eur("0.15"), Decimal(9))
    assert sorted(built.usage_record_ids) == ["r0", "r1", "r2", "s0", "s1"]
    result = totals([line.taxed() for line in built.lines], "EUR")
    # 21 % of 0.04 = 0.0084 -> 0.01; 9 % of 0.15 = 0.0135 -> 0.01 (half-up per group).
    assert [(g.tax_rate, g.taxable_amount, g.tax_amount) for g in result.breakdown] == [
        (Decimal(9), eur("0.15"), eur("0.01")),
        (Decimal(21), eur("0.04"), eur("0.01")),
    ]
    assert result.gross == eur("0.21")


def test_vat_breakdown_rounds_per_group_not_per_line() -> None:
    """Three lines of 0.07 at 21 %: the group's 0.21 x 21 % = 0.0441 -> 0.04 (per line
    it would be 0.0147 -> 0.01 each, 0.03). Categories S and E are separate groups even at
    the same rate spelling ("21" and "21.0" are one group)."""
    lines = [TaxedAmount(eur("0.07"), "S", Decimal(21))] * 3
    assert totals(lines, "EUR").tax == eur("0.04")
    mixed = [
        TaxedAmount(eur("10.00"), "S", Decimal(21)),
        TaxedAmount(eur("10.00"), "S", Decimal("21.0")),
        TaxedAmount(eur("4.99"), "E", Decimal(0)),
    ]
    result = totals(mixed, "EUR")
    assert [(g.tax_category, g.taxable_amount) for g in result.breakdown] == [
        ("E", eur("4.99")),
        ("S", eur("20.00")),
    ]
    assert result.breakdown[0].exemption_reason == "Exempt from VAT"
    assert (result.tax, result.gross) == (eur("4.20"), eur("29.19"))


def test_inclusive_prices_become_nets_per_line_first() -> None:
    """12.10 including 21 % VAT is a net of 10.00; 9.99 incl. 21 % -> 8.256... -> 8.26,
    whose VAT is 1.7346 -> 1.73, total 9.99 again."""
    assert net_from_inclusive(eur("12.10"), Decimal(21)) == eur("10.00")
    net = net_from_inclusive(eur("9.99"), Decimal(21))
    assert net == eur("8.26")
    result = totals([TaxedAmount(net, "S", Decimal(21))], "EUR")
    assert result.gross == eur("9.99")


def test_an_add_on_of_three_units_is_prorated_as_one_line_rounded_once() -> None:
    """3 x tv (10.00) added on 16 March: 30.00 x 16/31 = 15.4838... -> 15.48 (one rounding;
    rounding each unit first would give 3 x 5.16 = 15.48 here but 3 x 3.23 = 9.69 for
    6.25 x 16/31 = 3.2258..., against 18.75 x 16/31 = 9.677... -> 9.68)."""
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)
    pricing = Pricing({"tv": [fee("tv", "10.00")], "box": [fee("box", "6.25")]}, {}, VAT21)
    items = [
        PendingItem(
            pending_item_id=f"pit_{code}",
            account_id="acc_1",
            kind=LineKind.PRORATION,
            description="",
            service=code,
            create_time=T0,
            fee_plan_code=code,
            quantity=3,
            days_used=16,
            days_in_cycle=31,
        )
        for code in ("tv", "box")
    ]
    built = build_lines(
        boundary=march.next(),
        ended=None,
        currency="EUR",
        sources=[Charges("acc_1", pending=items)],
        pricing=pricing,
        billing_account_id="acc_1",
    )
    assert [(ln.plan_code, ln.quantity, ln.net_amount) for ln in built.lines] == [
        ("tv", Decimal(3), eur("15.48")),
        ("box", Decimal(3), eur("9.68")),
    ]


def test_a_top_up_receipt_not_subject_to_vat_is_never_beside_taxed_charges() -> None:
    """EN 16931 BR-O-11: "not subject to VAT" (O) stands alone on a document. A top-up
    (O, 50.00) pending beside a late fee (S 21 %, 5.00) stays pending; alone, it is the
    receipt: 50.00, VAT 0.00."""
    march = cycle_containing(datetime(2027, 3, 15, tzinfo=UTC), 1, AMS)

    def priced(item_id: str, kind: LineKind, amount: str, category: str, rate: int) -> PendingItem:
        return PendingItem(
            pending_item_id=item_id,
            account_id="acc_1",
            kind=kind,
            description=kind.value,
            service="top-up" if kind == LineKind.TOP_UP else "other",
            create_time=T0,
            amount=eur(amount),
            tax_category=category,
            tax_rate=Decimal(rate),
        )

    top_up = priced("pit_top_up", LineKind.TOP_UP, "50.00", "O", 0)
    late_fee = priced("pit_late_fee", LineKind.LATE_FEE, "5.00", "S", 21)

    def build(*items: PendingItem) -> tuple[list[str], list[str]]:
        built = build_lines(
            boundary=march.next(),
            ended=None,
            currency="EUR",
            sources=[Charges("acc_1", pending=items)],
            pricing=PRICING,
            billing_account_id="acc_1",
        )
        return [line.tax_category for line in built.lines], built.pending_item_ids

    assert build(top_up, late_fee) == (["S"], ["pit_late_fee"])
    categories, taken = build(top_up)
    assert (categories, taken) == (["O"], ["pit_top_up"])
    receipt = totals([TaxedAmount(eur("50.00"), "O", Decimal(0))], "EUR")
    assert (receipt.net, receipt.tax, receipt.gross) == (eur("50.00"), eur("0"), eur("50.00"))
