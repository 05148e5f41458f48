"""Invoices and credit notes as documents: domain -> ``documents.model.InvoiceDocument``.

``GetInvoiceDocument`` loads the finalised invoice (or credit note), its
customer and its call-by-call detail, converts them here and hands the result
to ``services.invoicing.documents.render``. Conversion rules (EN 16931):

- a credit line (negative net) is a negative quantity at a positive price (BR-27:
  an item's net price is never negative);
- BT-113 (paid) is the account credit applied at finalisation, so BT-115 (payable) =
  total with VAT - that credit (BR-CO-16). Payments received after the invoice was
  issued never change its document: an issued invoice is the same bytes whenever it is
  fetched (the e-mailed PDF equals a later download), and its payment state is in the
  API, not in the document;
- the seller is the operator, from ``INVOICING_SELLER_*`` (defaults: Reckon Telecom
  B.V., Amsterdam); the buyer's country is the account's tax region, its VAT
  identifier the customer's ``vat_id``;
- VAT categories without VAT carry their exemption reason text and, where one fits,
  the VATEX code (BR-AE-10, BR-IC-10, BR-G-10, BR-O-10); a document with "not subject
  to VAT" (O) names no VAT identifiers (BR-O-02); intra-community supply (K) names the
  country delivered to (BT-80, BR-IC-12) and, on credit notes too, the period (BR-IC-11).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from services.common.errors import FailedPrecondition, NotFound
from services.common.money import Money
from services.invoicing.documents import model as doc
from services.invoicing.documents.render import DocumentFormat, render
from services.invoicing.domain.arithmetic import VatBreakdown
from services.invoicing.domain.cycles import local_date
from services.invoicing.domain.model import CreditNote, Invoice, InvoiceLine
from services.invoicing.domain.parties import CustomerFacts
from services.invoicing.service_layer.unit_of_work import InvoicingUnitOfWork


def seller() -> doc.Party:
    env = os.environ.get
    return doc.Party(
        name=env("INVOICING_SELLER_NAME", "Reckon Telecom B.V."),
        address=doc.PostalAddress(
            env("INVOICING_SELLER_STREET", "Keizersgracht 123"),
            env("INVOICING_SELLER_CITY", "Amsterdam"),
            env("INVOICING_SELLER_POST_CODE", "1015 CJ"),
            env("INVOICING_SELLER_COUNTRY", "NL"),
        ),
        vat_id=env("INVOICING_SELLER_VAT_ID", "NL859123456B01"),
        legal_registration_id=env("INVOICING_SELLER_REGISTRATION", "12345678"),
        electronic_address=env("INVOICING_SELLER_EMAIL", "billing@reckon.example"),
        contact_email=env("INVOICING_SELLER_EMAIL", "billing@reckon.example"),
    )


def _buyer(customer: CustomerFacts | None, account_id: str, tax_region: str) -> doc.Party:
    country = (tax_region or "NL").split("-")[0].upper()[:2]
    return doc.Party(
        name=customer.display_name if customer and customer.display_name else account_id,
        address=doc.PostalAddress(None, None, None, country),
        identifier=account_id,
        electronic_address=customer.email if customer and customer.email else None,
        vat_id=customer.vat_id if customer and customer.vat_id else None,
    )


@dataclass(frozen=True)
class _VatParties:
    """Seller and buyer as the document's VAT categories require them."""

    seller: doc.Party
    buyer: doc.Party
    deliver_to_country: str | None


def _vat_parties(categories: set[str], buyer: doc.Party) -> _VatParties:
    """- "not subject to VAT" (O): no seller or buyer VAT identifier (BR-O-02..04);
    - intra-community supply (K): the buyer's country is where the supply goes (BT-80,
      BR-IC-12); reverse charge (AE) and K need the buyer's VAT identifier (BR-AE-02,
      BR-IC-02), learnt from accounts' customer events (``vat_id``)."""
    operator = seller()
    if "O" in categories:
        return _VatParties(replace(operator, vat_id=None), replace(buyer, vat_id=None), None)
    country = buyer.address.country_code if "K" in categories else None
    return _VatParties(operator, buyer, country)


def _line(line: InvoiceLine, zone: str) -> doc.InvoiceLine:
    quantity, price = line.quantity, line.unit_price
    if line.net_amount.is_negative() and price.is_negative():
        quantity, price = -quantity, -price
    elif line.net_amount.is_negative() and quantity > 0:
        quantity = -quantity
        price = abs(price)
    return doc.InvoiceLine(
        line_id=line.line_id,
        name=line.description,
        quantity=quantity,
        unit_code=line.unit_code or "C62",
        unit_price=price,
        net_amount=line.net_amount,
        vat_category=doc.VatCategory(line.tax_category),
        vat_rate=line.tax_rate,
        period_start=local_date(line.period_start, zone) if line.period_start else None,
        period_end=local_date(line.period_end, zone) if line.period_end else None,
        seller_item_id=line.service or None,
    )


def _breakdown(groups: tuple[VatBreakdown, ...]) -> tuple[doc.VatBreakdown, ...]:
    return tuple(
        doc.VatBreakdown(
            category=doc.VatCategory(g.tax_category),
            rate=g.tax_rate,
            taxable_amount=g.taxable_amount,
            tax_amount=g.tax_amount,
            exemption_reason=g.exemption_reason or None,
            exemption_reason_code=g.exemption_reason_code or None,
        )
        for g in groups
    )


def invoice_document(
    invoice: Invoice, customer: CustomerFacts | None, details: list[doc.UsageDetail]
) -> doc.InvoiceDocument:
    if not invoice.is_final or invoice.issue_date is None:
        raise FailedPrecondition(
            f"invoice {invoice.invoice_id} is a DRAFT: it has no number to print",
            reason="INVALID_INVOICE_STATUS",
        )
    zero = Money.zero(invoice.currency)
    net, tax, gross = invoice.total_net or zero, invoice.total_tax or zero, invoice.gross
    paid = invoice.credit_applied or zero
    parties = _vat_parties(
        {line.tax_category for line in invoice.lines},
        _buyer(customer, invoice.account_id, invoice.tax_region),
    )
    return doc.InvoiceDocument(
        kind=doc.DocumentKind.INVOICE,
        number=invoice.number,
        issue_date=invoice.issue_date,
        currency=invoice.currency,
        seller=parties.seller,
        buyer=parties.buyer,
        deliver_to_country=parties.deliver_to_country,
        lines=tuple(_line(line, invoice.time_zone) for line in invoice.lines),
        vat_breakdown=_breakdown(invoice.breakdown),
        totals=doc.DocumentTotals(
            line_net_total=net,
            tax_exclusive=net,
            tax_total=tax,
            tax_inclusive=gross,
            prepaid=paid if paid.is_positive() else None,
            payable=gross - paid,
        ),
        due_date=invoice.due_date,
        period_start=local_date(invoice.period_start, invoice.time_zone),
        period_end=_last_day(invoice.period_end, invoice.time_zone, invoice.period_start),
        payment_terms=f"{invoice.payment_terms_days} days",
        payment_reference=invoice.number,
        buyer_reference=invoice.account_id,
        usage_details=tuple(details),
        language=invoice.language_code or "en",
        template_group=invoice.group_id or invoice.reseller_id or None,
    )


def _last_day(end: datetime, zone: str, start: datetime) -> date:
    """BT-74 is the last day of the period, inclusive: the day before the (exclusive) end."""
    from datetime import timedelta

    last = local_date(end, zone) - timedelta(days=1)
    return max(last, local_date(start, zone))


def credit_note_document(
    note: CreditNote, invoice: Invoice, customer: CustomerFacts | None
) -> doc.InvoiceDocument:
    zero = Money.zero(note.currency)
    net, tax = note.total_net or zero, note.total_tax or zero
    parties = _vat_parties(
        {line.tax_category for line in note.lines},
        _buyer(customer, note.account_id, invoice.tax_region),
    )
    return doc.InvoiceDocument(
        kind=doc.DocumentKind.CREDIT_NOTE,
        number=note.number,
        issue_date=note.issue_date,
        currency=note.currency,
        seller=parties.seller,
        buyer=parties.buyer,
        deliver_to_country=parties.deliver_to_country,
        # The period the credited invoice covered (BG-14; BR-IC-11 for intra-community).
        period_start=local_date(invoice.period_start, invoice.time_zone),
        period_end=_last_day(invoice.period_end, invoice.time_zone, invoice.period_start),
        lines=tuple(
            doc.InvoiceLine(
                line_id=line.line_id,
                name=line.description,
                quantity=Decimal(1),
                unit_code="C62",
                unit_price=line.net_amount,
                net_amount=line.net_amount,
                vat_category=doc.VatCategory(line.tax_category),
                vat_rate=line.tax_rate,
            )
            for line in note.lines
        ),
        vat_breakdown=_breakdown(note.breakdown),
        totals=doc.DocumentTotals(
            line_net_total=net,
            tax_exclusive=net,
            tax_total=tax,
            tax_inclusive=note.gross,
            payable=note.gross,
        ),
        preceding_invoices=(doc.PrecedingInvoice(invoice.number, invoice.issue_date),),
        buyer_reference=note.account_id,
        notes=(note.reason,),
        language=note.language_code or "en",
        template_group=invoice.group_id or invoice.reseller_id or None,
    )


class ModelRenderer:
    """The servicer's ``DocumentRenderer``: loads, converts and renders in one thread."""

    def render(
        self,
        uow_factory: Callable[[], InvoicingUnitOfWork],
        invoice_id: str,
        credit_note_id: str,
        fmt: str,
    ) -> tuple[bytes, str, str]:
        with uow_factory() as uow:
            if credit_note_id:
                note = uow.credit_notes.get(credit_note_id)
                if note is None:
                    raise NotFound(
                        f"no credit note {credit_note_id}", reason="CREDIT_NOTE_NOT_FOUND"
                    )
                invoice = uow.invoices.get(note.invoice_id)
                assert invoice is not None
                document = credit_note_document(
                    note, invoice, uow.parties.customer(note.customer_id)
                )
            else:
                found = uow.invoices.get(invoice_id)
                if found is None:
                    raise NotFound(f"no invoice {invoice_id}", reason="INVOICE_NOT_FOUND")
                details = _details(uow, found)
                document = invoice_document(found, uow.parties.customer(found.customer_id), details)
        rendered = render(document, DocumentFormat(fmt.lower()))
        return rendered.content, rendered.media_type, rendered.filename


def _details(uow: InvoicingUnitOfWork, invoice: Invoice) -> list[doc.UsageDetail]:
    """Each rated record under the usage line it was aggregated into."""
    lines = {
        (line.source_account_id or invoice.account_id, line.service, line.destination_group): line
        for line in invoice.lines
        if line.detail_count
    }
    rows = []
    for record in uow.usage.detail(invoice.invoice_id):
        line = lines.get((record.account_id, record.service, record.destination))
        if line is None:
            continue
        rows.append(
            doc.UsageDetail(
                line_id=line.line_id,
                started_at=record.event_time,
                description=f"{record.service} {record.destination}".strip(),
                quantity=record.quantity,
                unit_code=record.unit or "C62",
                amount=record.net,
            )
        )
    return rows
