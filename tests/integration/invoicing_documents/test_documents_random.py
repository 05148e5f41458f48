"""Random invoices and credit notes, totals computed by the EN 16931 arithmetic, pass the
official XSDs and EN 16931 rules in UBL and CII: the writers map every category,
allowance and total the way the standard's own checks (BR-CO-*, BR-S/Z/E/AE/G-*) expect."""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.money import Money
from services.invoicing.documents.cii import to_cii_bytes
from services.invoicing.documents.example import sample_invoice, totals_for
from services.invoicing.documents.model import (
    DocumentAllowance,
    DocumentKind,
    InvoiceLine,
    VatCategory,
)
from services.invoicing.documents.ubl import to_ubl_bytes
from services.invoicing.documents.validation import SchematronWorker, validate

RATES = [
    (VatCategory.STANDARD, Decimal(21)),
    (VatCategory.STANDARD, Decimal(9)),
    (VatCategory.ZERO, Decimal(0)),
    (VatCategory.EXEMPT, Decimal(0)),
    (VatCategory.REVERSE_CHARGE, Decimal(0)),
    (VatCategory.EXPORT, Decimal(0)),
]


@st.composite
def lines(draw: st.DrawFn) -> tuple[InvoiceLine, ...]:
    count = draw(st.integers(1, 6))
    result = []
    for i in range(count):
        category, rate = draw(st.sampled_from(RATES))
        quantity = Decimal(draw(st.integers(1, 50_000))) / 100
        price = Decimal(draw(st.integers(1, 2_000_000))) / 10_000
        gross = (quantity * price).quantize(Decimal("0.01"), ROUND_HALF_UP)
        allowance = draw(st.sampled_from([None, Decimal("0.50"), Decimal("1.00")]))
        if allowance is not None and allowance >= gross:
            allowance = None
        net = gross - (allowance or 0)
        result.append(
            InvoiceLine(
                line_id=str(i + 1),
                name=f"Service {i + 1}",
                quantity=quantity,
                unit_code=draw(st.sampled_from(["C62", "MIN", "E34", "DAY"])),
                unit_price=Money.of(price, "EUR"),
                allowance=Money.of(allowance, "EUR") if allowance is not None else None,
                allowance_reason="Promotion" if allowance is not None else None,
                net_amount=Money.of(net, "EUR"),
                vat_category=category,
                vat_rate=rate,
            )
        )
    return tuple(result)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    invoice_lines=lines(),
    credit=st.booleans(),
    with_allowance=st.booleans(),
)
def test_random_documents_validate(
    schematron: SchematronWorker, invoice_lines, credit: bool, with_allowance: bool
) -> None:
    category, rate = invoice_lines[0].vat_category, invoice_lines[0].vat_rate
    allowances = (
        (DocumentAllowance(Money.of("0.01", "EUR"), category, rate, "Rounding discount"),)
        if with_allowance
        else ()
    )
    breakdown, totals = totals_for(invoice_lines, allowances)
    document = replace(
        sample_invoice(calls=0),
        kind=DocumentKind.CREDIT_NOTE if credit else DocumentKind.INVOICE,
        lines=invoice_lines,
        allowances=allowances,
        vat_breakdown=breakdown,
        totals=totals,
        usage_details=(),
    )
    for xml in (to_ubl_bytes(document), to_cii_bytes(document)):
        report = validate(xml, schematron)
        assert report.errors == (), report.summary()
