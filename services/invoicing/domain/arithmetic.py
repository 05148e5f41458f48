"""EN 16931 invoice arithmetic: line nets, the VAT breakdown and the totals.

- A line's net is quantity x unit price minus its allowance, rounded once to the
  currency's minor unit (half-up). Usage lines sum exact rated amounts and are
  rounded once too.
- Inclusive prices are converted to nets per line first:
  ``net = gross / (1 + rate)``, rounded half-up.
- VAT breakdown per category and rate: taxable amount = sum of the line nets in
  it; tax = taxable x rate, rounded half-up to the currency's minor unit (2
  decimals for EUR and most currencies: BR-CO-17).
- Totals: net = sum of line nets; tax = sum of the breakdown's taxes; gross = net + tax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from services.common.money import (
    CurrencyMismatch,
    Money,
    Rounding,
    currency_exponent,
    round_decimal,
)

HUNDRED = Decimal(100)
# Categories without VAT: the rate must be 0 and the breakdown needs a reason text.
EXEMPT_CATEGORIES = frozenset({"E", "AE", "K", "G", "O"})
CATEGORIES = frozenset({"S", "Z", *EXEMPT_CATEGORIES})
EXEMPTION_REASONS = {
    "E": "Exempt from VAT",
    "AE": "Reverse charge",
    "K": "Intra-community supply",
    "G": "Export outside the EU",
    "O": "Not subject to VAT",
}
# BT-121 VAT exemption reason codes (CEF VATEX) where one code fits the whole category;
# exempt supplies (E) depend on the article, so they carry the text only (BR-E-10).
EXEMPTION_REASON_CODES = {
    "AE": "VATEX-EU-AE",
    "K": "VATEX-EU-IC",
    "G": "VATEX-EU-G",
    "O": "VATEX-EU-O",
}


def round_money(amount: Decimal, currency: str) -> Money:
    """Half-up to the currency's minor unit: the one rounding rule of invoices."""
    return Money(round_decimal(amount, currency_exponent(currency), Rounding.HALF_UP), currency)


def line_net(quantity: Decimal, unit_price: Money, allowance: Money | None = None) -> Money:
    """quantity x unit price - allowance, rounded once."""
    with localcontext() as context:
        context.prec = 60
        exact = quantity * unit_price.amount - (allowance.amount if allowance else Decimal(0))
    return round_money(exact, unit_price.currency)


def net_from_inclusive(gross: Money, rate_percent: Decimal) -> Money:
    """The net inside a VAT-inclusive amount, rounded once (the cent lands in the net)."""
    with localcontext() as context:
        context.prec = 60
        exact = gross.amount * HUNDRED / (HUNDRED + rate_percent)
    return round_money(exact, gross.currency)


def tax_of(taxable: Money, rate_percent: Decimal) -> Money:
    with localcontext() as context:
        context.prec = 60
        exact = taxable.amount * rate_percent / HUNDRED
    return round_money(exact, taxable.currency)


@dataclass(frozen=True)
class TaxedAmount:
    """What the breakdown needs of a line: its net and its VAT category and rate."""

    net: Money
    tax_category: str
    tax_rate: Decimal


@dataclass(frozen=True)
class VatBreakdown:
    tax_category: str
    tax_rate: Decimal
    taxable_amount: Money
    tax_amount: Money

    @property
    def exemption_reason(self) -> str:
        return EXEMPTION_REASONS.get(self.tax_category, "")

    @property
    def exemption_reason_code(self) -> str:
        return EXEMPTION_REASON_CODES.get(self.tax_category, "")


@dataclass(frozen=True)
class Totals:
    net: Money
    tax: Money
    gross: Money
    breakdown: tuple[VatBreakdown, ...]


def vat_breakdown(lines: Iterable[TaxedAmount], currency: str) -> tuple[VatBreakdown, ...]:
    """One entry per (category, rate), in category then rate order."""
    # Summed as exact Decimals (line nets are already rounded; a sum of them needs no
    # rounding), Money made once per group: a bill run builds thousands of these.
    groups: dict[tuple[str, Decimal], Decimal] = {}
    with localcontext() as context:
        context.prec = 60
        for line in lines:
            if line.net.currency != currency:
                raise CurrencyMismatch(currency, line.net.currency)
            key = (line.tax_category, line.tax_rate.normalize())
            groups[key] = groups.get(key, _ZERO) + line.net.amount
    return tuple(
        VatBreakdown(category, rate, taxable, tax_of(taxable, rate))
        for (category, rate), taxable in (
            (key, Money(amount, currency)) for key, amount in sorted(groups.items())
        )
    )


def totals(lines: Sequence[TaxedAmount], currency: str) -> Totals:
    breakdown = vat_breakdown(lines, currency)
    places = Decimal(1).scaleb(-currency_exponent(currency))
    with localcontext() as context:
        context.prec = 60
        net = sum((line.net.amount for line in lines), _ZERO)
        tax = sum((group.tax_amount.amount for group in breakdown), _ZERO)
        gross = net + tax
    # Line nets are rounded to the currency already, so this quantize (half-even, as
    # ``Money.rounded`` was) normally only sets the exponent (0 -> 0.00).
    return Totals(
        Money(_exact(net, places), currency),
        Money(_exact(tax, places), currency),
        Money(_exact(gross, places), currency),
        breakdown,
    )


_ZERO = Decimal(0)


def _exact(value: Decimal, places: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = 60
        return value.quantize(places, rounding=ROUND_HALF_EVEN)
