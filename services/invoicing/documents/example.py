"""Example documents: the conference-call customer's December invoice and its credit note.

Used by the tests, the benchmark and ``python -m services.invoicing.documents sample``
so an operator can see every format without a running bill run. The totals are
computed here with the EN 16931 arithmetic of DOMAIN.md (invoicing's domain owns
that arithmetic for real invoices; this is just enough to make the examples true).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from services.common.money import Money
from services.invoicing.documents.model import (
    DocumentAllowance,
    DocumentKind,
    DocumentTotals,
    InvoiceDocument,
    InvoiceLine,
    Party,
    PaymentInstructions,
    PaymentMeansCode,
    PostalAddress,
    PrecedingInvoice,
    UsageDetail,
    VatBreakdown,
    VatCategory,
)

CENT = Decimal("0.01")
_EXEMPTION_TEXT = {
    VatCategory.EXEMPT: "Exempt from VAT: insurance (art. 135(1)(a) Directive 2006/112/EC)",
    VatCategory.REVERSE_CHARGE: "Reverse charge: VAT to be accounted for by the customer",
    VatCategory.INTRA_COMMUNITY: "Intra-community supply",
    VatCategory.EXPORT: "Export outside the EU",
    VatCategory.NOT_SUBJECT: "Not subject to VAT",
}

SELLER = Party(
    name="Reckon Telecom B.V.",
    trading_name="Reckon Telecom",
    address=PostalAddress("Keizersgracht 123", "Amsterdam", "1015 CJ", "NL"),
    vat_id="NL859123456B01",
    legal_registration_id="12345678",
    legal_info="Registered in the Dutch trade register (KvK) under 12345678",
    electronic_address="billing@reckon.example",
    contact_phone="+31 20 555 0100",
    contact_email="billing@reckon.example",
)
BUYER = Party(
    name="Van Dijk Consultancy B.V.",
    address=PostalAddress("Oudegracht 45", "Utrecht", "3511 AB", "NL"),
    vat_id="NL004495445B01",
    identifier="ACC-000042",
    electronic_address="finance@vandijk.example",
    contact_name="Anna van Dijk",
)
PAYMENT = PaymentInstructions(
    means_code=PaymentMeansCode.SEPA_CREDIT_TRANSFER,
    means_text="SEPA credit transfer",
    iban="NL91ABNA0417164300",
    account_name="Reckon Telecom B.V.",
    bic="ABNANL2A",
)


def _money(amount: Decimal | str, currency: str = "EUR") -> Money:
    return Money.of(amount, currency)


def totals_for(
    lines: tuple[InvoiceLine, ...],
    allowances: tuple[DocumentAllowance, ...] = (),
    prepaid: Money | None = None,
) -> tuple[tuple[VatBreakdown, ...], DocumentTotals]:
    """VAT breakdown and totals by the DOMAIN.md rule: tax per category, half-up to cents."""
    currency = lines[0].net_amount.currency
    taxable: dict[tuple[VatCategory, Decimal], Decimal] = defaultdict(Decimal)
    for line in lines:
        taxable[(line.vat_category, line.vat_rate)] += line.net_amount.amount
    for allowance in allowances:
        taxable[(allowance.vat_category, allowance.vat_rate)] -= allowance.amount.amount
    breakdown = tuple(
        VatBreakdown(
            category=category,
            rate=rate,
            taxable_amount=_money(base, currency),
            tax_amount=_money((base * rate / 100).quantize(CENT, ROUND_HALF_UP), currency),
            exemption_reason=_EXEMPTION_TEXT.get(category),
        )
        for (category, rate), base in taxable.items()
    )
    line_total = sum((line.net_amount.amount for line in lines), Decimal(0))
    allowance_total = sum((a.amount.amount for a in allowances), Decimal(0))
    tax = sum((b.tax_amount.amount for b in breakdown), Decimal(0))
    exclusive = line_total - allowance_total
    inclusive = exclusive + tax
    paid = prepaid.amount if prepaid is not None else Decimal(0)
    totals = DocumentTotals(
        line_net_total=_money(line_total, currency),
        allowance_total=_money(allowance_total, currency) if allowances else None,
        tax_exclusive=_money(exclusive, currency),
        tax_total=_money(tax, currency),
        tax_inclusive=_money(inclusive, currency),
        prepaid=prepaid,
        payable=_money(inclusive - paid, currency),
    )
    return breakdown, totals


def _calls(line_id: str, start: datetime, count: int) -> tuple[UsageDetail, ...]:
    """Deterministic national calls rated per second at 0.045 EUR a minute (unrounded)."""
    rows = []
    for i in range(count):
        seconds = 37 + (i * 7919) % 1400
        rows.append(
            UsageDetail(
                line_id=line_id,
                started_at=start + timedelta(hours=9 + (i * 5) % 9, days=(i * 3) % 30),
                description=f"+31 30 {2000000 + i * 1373 % 900000:07d} (Netherlands fixed)",
                quantity=(Decimal(seconds) / 60).quantize(Decimal("0.0001")),
                unit_code="MIN",
                amount=Decimal(seconds) * Decimal("0.00075"),
            )
        )
    return tuple(rows)


def sample_invoice(
    language: str = "en", template_group: str | None = None, calls: int = 40
) -> InvoiceDocument:
    """December's invoice: a plan fee with a loyalty allowance, usage, an add-on, insurance."""
    details = _calls("2", datetime(2026, 11, 1), calls)
    usage_amount = sum((d.amount for d in details), Decimal(0))
    minutes = sum((d.quantity for d in details), Decimal(0))
    lines = (
        InvoiceLine(
            line_id="1",
            name="Business Pro plan",
            description="Monthly fee, billed in advance",
            quantity=Decimal(1),
            unit_code="C62",
            unit_price=_money("25.00"),
            allowance=_money("2.50"),
            allowance_reason="Loyalty discount 10 %",
            net_amount=_money("22.50"),
            vat_category=VatCategory.STANDARD,
            vat_rate=Decimal(21),
            period_start=date(2026, 12, 1),
            period_end=date(2026, 12, 31),
            seller_item_id="PLAN-BUSINESS-PRO",
        ),
        InvoiceLine(
            line_id="2",
            name="National calls",
            description="Calls to Dutch fixed numbers, per second",
            quantity=minutes,
            unit_code="MIN",
            unit_price=_money("0.045"),
            net_amount=_money(usage_amount.quantize(CENT, ROUND_HALF_UP)),
            vat_category=VatCategory.STANDARD,
            vat_rate=Decimal(21),
            period_start=date(2026, 11, 1),
            period_end=date(2026, 11, 30),
            seller_item_id="VOICE-NATIONAL",
        ),
        InvoiceLine(
            line_id="3",
            name="Conference bridge add-on",
            description="Prorated: 17 of 31 days (15-31 December)",
            quantity=Decimal(1),
            unit_code="C62",
            unit_price=_money("5.48"),
            net_amount=_money("5.48"),
            vat_category=VatCategory.STANDARD,
            vat_rate=Decimal(21),
            period_start=date(2026, 12, 15),
            period_end=date(2026, 12, 31),
            seller_item_id="ADDON-CONFERENCE",
        ),
        InvoiceLine(
            line_id="4",
            name="Device insurance",
            quantity=Decimal(1),
            unit_code="C62",
            unit_price=_money("4.95"),
            net_amount=_money("4.95"),
            vat_category=VatCategory.EXEMPT,
            vat_rate=Decimal(0),
            seller_item_id="INSURANCE-DEVICE",
        ),
    )
    allowances = (
        DocumentAllowance(
            amount=_money("1.00"),
            vat_category=VatCategory.STANDARD,
            vat_rate=Decimal(21),
            reason="Paperless billing discount",
        ),
    )
    breakdown, totals = totals_for(lines, allowances)
    return InvoiceDocument(
        kind=DocumentKind.INVOICE,
        number="INV-2026-000123",
        issue_date=date(2026, 12, 1),
        due_date=date(2026, 12, 15),
        currency="EUR",
        seller=SELLER,
        buyer=BUYER,
        lines=lines,
        vat_breakdown=breakdown,
        totals=totals,
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 31),
        payment_terms="Payment within 14 days of the invoice date",
        payment_reference="RF18INV2026000123",
        payment=PAYMENT,
        buyer_reference="ACC-000042",
        allowances=allowances,
        notes=("Thank you for calling with Reckon Telecom.",),
        usage_details=details,
        language=language,
        template_group=template_group,
    )


def sample_credit_note(language: str = "en", template_group: str | None = None) -> InvoiceDocument:
    """A partial credit for a three-day outage, referencing the December invoice."""
    lines = (
        InvoiceLine(
            line_id="1",
            name="Service credit: outage 3-5 December",
            description="3 of 31 days of the Business Pro plan",
            quantity=Decimal(3),
            unit_code="DAY",
            unit_price=_money("0.73"),
            net_amount=_money("2.19"),
            vat_category=VatCategory.STANDARD,
            vat_rate=Decimal(21),
        ),
    )
    breakdown, totals = totals_for(lines)
    return InvoiceDocument(
        kind=DocumentKind.CREDIT_NOTE,
        number="CN-2026-000007",
        issue_date=date(2026, 12, 20),
        currency="EUR",
        seller=SELLER,
        buyer=BUYER,
        lines=lines,
        vat_breakdown=breakdown,
        totals=totals,
        payment_terms="Credited to your account balance",
        payment_reference="RF18INV2026000123",
        payment=PAYMENT,
        buyer_reference="ACC-000042",
        preceding_invoices=(PrecedingInvoice("INV-2026-000123", date(2026, 12, 1)),),
        notes=("Credit for the service interruption of 3-5 December.",),
        language=language,
        template_group=template_group,
    )


def sample_reverse_charge_invoice(language: str = "fr") -> InvoiceDocument:
    """A cross-border business customer: VAT reverse charged (AE), buyer in France."""
    base = sample_invoice(language=language, calls=12)
    lines = tuple(
        replace(line, vat_category=VatCategory.REVERSE_CHARGE, vat_rate=Decimal(0))
        for line in base.lines
        if line.vat_category is VatCategory.STANDARD
    )
    allowances = tuple(
        replace(a, vat_category=VatCategory.REVERSE_CHARGE, vat_rate=Decimal(0))
        for a in base.allowances
    )
    breakdown, totals = totals_for(lines, allowances)
    buyer = Party(
        name="Conférences Dupont SARL",
        address=PostalAddress("12 rue de la Paix", "Paris", "75002", "FR"),
        vat_id="FR40303265045",
        identifier="ACC-000077",
        contact_name="Jeanne Dupont",
    )
    return replace(
        base,
        number="INV-2026-000124",
        buyer=buyer,
        buyer_reference="ACC-000077",
        lines=lines,
        allowances=allowances,
        vat_breakdown=breakdown,
        totals=totals,
        usage_details=tuple(d for d in base.usage_details if d.line_id != "4"),
    )


def _zero_rated(base: InvoiceDocument, category: VatCategory) -> InvoiceDocument:
    """``base``'s standard-rated lines and allowances at 0 % in ``category``."""
    lines = tuple(
        replace(line, vat_category=category, vat_rate=Decimal(0))
        for line in base.lines
        if line.vat_category is VatCategory.STANDARD
    )
    allowances = tuple(
        replace(a, vat_category=category, vat_rate=Decimal(0)) for a in base.allowances
    )
    breakdown, totals = totals_for(lines, allowances)
    return replace(
        base,
        lines=lines,
        allowances=allowances,
        vat_breakdown=breakdown,
        totals=totals,
        usage_details=tuple(
            d for d in base.usage_details if d.line_id in {line.line_id for line in lines}
        ),
    )


def sample_intra_community_invoice(language: str = "nl") -> InvoiceDocument:
    """A business customer in Belgium: intra-community supply (K), delivered to BE."""
    buyer = Party(
        name="Vergaderzalen Peeters BV",
        address=PostalAddress("Meir 1", "Antwerpen", "2000", "BE"),
        vat_id="BE0477472701",
        identifier="ACC-000078",
    )
    return replace(
        _zero_rated(sample_invoice(language=language, calls=6), VatCategory.INTRA_COMMUNITY),
        number="INV-2026-000125",
        buyer=buyer,
        buyer_reference="ACC-000078",
        deliver_to_country="BE",
    )


def sample_not_subject_receipt(language: str = "en") -> InvoiceDocument:
    """Outside the scope of VAT (O): no VAT identifiers on either side (BR-O-02..04)."""
    base = _zero_rated(sample_invoice(language=language, calls=3), VatCategory.NOT_SUBJECT)
    return replace(
        base,
        number="INV-2026-000126",
        seller=replace(base.seller, vat_id=None),
        buyer=replace(base.buyer, vat_id=None),
    )
