"""Property: for random invoices, totals equal the sum of the lines and the VAT breakdown."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.money import Money
from services.invoicing.domain.arithmetic import TaxedAmount, tax_of, totals

RATES = [
    ("S", Decimal(21)),
    ("S", Decimal(9)),
    ("S", Decimal("5.5")),
    ("Z", Decimal(0)),
    ("E", Decimal(0)),
]

line = st.builds(
    lambda cents, rate: TaxedAmount(Money.from_minor_units(cents, "EUR"), *rate),
    st.integers(min_value=-500_000, max_value=5_000_000),
    st.sampled_from(RATES),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line, min_size=1, max_size=40))
def test_totals_are_the_sum_of_lines_and_of_the_breakdown(lines: list[TaxedAmount]) -> None:
    result = totals(lines, "EUR")
    zero = Money.zero("EUR")
    assert result.net == sum((ln.net for ln in lines), zero)
    assert result.net == sum((g.taxable_amount for g in result.breakdown), zero)
    assert result.tax == sum((g.tax_amount for g in result.breakdown), zero)
    assert result.gross == result.net + result.tax
    for group in result.breakdown:
        members = [
            ln
            for ln in lines
            if (ln.tax_category, ln.tax_rate) == (group.tax_category, group.tax_rate)
        ]
        assert group.taxable_amount == sum((ln.net for ln in members), zero)
        assert group.tax_amount == tax_of(group.taxable_amount, group.tax_rate)
        # Half-up to the cent: never more than half a cent from the exact tax.
        exact = group.taxable_amount.amount * group.tax_rate / 100
        assert abs(group.tax_amount.amount - exact) <= Decimal("0.005")
    assert len({(g.tax_category, g.tax_rate) for g in result.breakdown}) == len(result.breakdown)
