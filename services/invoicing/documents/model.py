"""What an invoice document says: the input of every renderer (HTML, PDF, UBL, CII, Factur-X).

Plain frozen dataclasses, no framework imports, so invoicing's domain (or a test)
builds one from a finalised invoice and hands it to ``documents.render``. Every
field maps one-to-one to an EN 16931 business term (``BT-n``) or group (``BG-n``),
noted beside it, so the UBL and CII writers are a mechanical translation and an
auditor can check the mapping against the standard.

Amounts are ``services.common.money.Money`` in the document currency (BT-5): the
renderers refuse a document that mixes currencies. Amounts are what invoicing
computed under the EN 16931 arithmetic (DOMAIN.md conventions); nothing here
recomputes them, because a document must show the invoice as finalised, and the
Schematron rules (BR-CO-*) check that arithmetic independently in the tests.

The call-by-call usage detail (``UsageDetail``) is not an EN 16931 term: it is
printed as the attachment of the HTML/PDF, where the rows of one line sum to
that line's amount before rounding (DOMAIN.md "Invoice arithmetic").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from services.common.money import Money

# BT-24: the EN 16931 core specification identifier (CustomizationID / GuidelineSpecifiedDocument).
EN16931_SPECIFICATION = "urn:cen.eu:en16931:2017"


class DocumentKind(StrEnum):
    """BT-3 invoice type code (UNTDID 1001)."""

    INVOICE = "380"  # commercial invoice
    CREDIT_NOTE = "381"  # credit note


class VatCategory(StrEnum):
    """BT-95 / BT-102 / BT-118 / BT-151 VAT category code (UNCL 5305 subset of EN 16931)."""

    STANDARD = "S"  # standard rate
    ZERO = "Z"  # zero rated goods
    EXEMPT = "E"  # exempt from tax
    REVERSE_CHARGE = "AE"  # VAT reverse charge
    INTRA_COMMUNITY = "K"  # intra-community supply (EEA)
    EXPORT = "G"  # free export item, tax not charged
    NOT_SUBJECT = "O"  # services outside scope of tax


class PaymentMeansCode(StrEnum):
    """BT-81 payment means type code (UNTDID 4461 subset used by Reckon)."""

    CREDIT_TRANSFER = "30"
    SEPA_CREDIT_TRANSFER = "58"
    SEPA_DIRECT_DEBIT = "59"
    BANK_CARD = "48"
    DIRECT_DEBIT = "49"


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """BG-5 seller / BG-8 buyer postal address."""

    line1: str | None  # BT-35 / BT-50 address line 1
    city: str | None  # BT-37 / BT-52 city
    post_code: str | None  # BT-38 / BT-53 post code
    country_code: str  # BT-40 / BT-55 country code (ISO 3166-1 alpha-2)
    line2: str | None = None  # BT-36 / BT-51 address line 2
    subdivision: str | None = None  # BT-39 / BT-54 country subdivision


@dataclass(frozen=True, slots=True)
class Party:
    """BG-4 seller or BG-7 buyer."""

    name: str  # BT-27 seller name / BT-44 buyer name
    address: PostalAddress  # BG-5 / BG-8
    vat_id: str | None = None  # BT-31 seller VAT identifier / BT-48 buyer VAT identifier
    legal_registration_id: str | None = None  # BT-30 / BT-47 legal registration identifier
    trading_name: str | None = None  # BT-28 seller trading name / BT-45 buyer trading name
    identifier: str | None = None  # BT-29 seller identifier / BT-46 buyer identifier (account id)
    legal_info: str | None = None  # BT-33 seller additional legal information
    electronic_address: str | None = None  # BT-34 / BT-49 electronic address (an e-mail, EM)
    contact_name: str | None = None  # BT-41 / BT-56 contact point
    contact_phone: str | None = None  # BT-42 / BT-57 contact telephone
    contact_email: str | None = None  # BT-43 / BT-58 contact e-mail


@dataclass(frozen=True, slots=True)
class PaymentInstructions:
    """BG-16 payment instructions (with BG-17 credit transfer / BG-19 direct debit)."""

    means_code: PaymentMeansCode  # BT-81 payment means type code
    means_text: str | None = None  # BT-82 payment means text
    iban: str | None = None  # BT-84 payment account identifier (BG-17)
    account_name: str | None = None  # BT-85 payment account name
    bic: str | None = None  # BT-86 payment service provider identifier
    mandate_reference: str | None = None  # BT-89 mandate reference identifier (BG-19)
    creditor_id: str | None = None  # BT-90 bank assigned creditor identifier
    debited_account: str | None = None  # BT-91 debited account identifier


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """BG-25 invoice line."""

    line_id: str  # BT-126 invoice line identifier
    name: str  # BT-153 item name
    quantity: Decimal  # BT-129 invoiced quantity
    unit_code: str  # BT-130 unit of measure (UN/ECE rec 20: C62 piece, MIN minute, MTQ m3...)
    unit_price: Money  # BT-146 item net price (per BT-149 base quantity, always 1 here)
    net_amount: Money  # BT-131 invoice line net amount = quantity x price - allowance
    vat_category: VatCategory  # BT-151 invoiced item VAT category code
    vat_rate: Decimal  # BT-152 invoiced item VAT rate, percent (21 means 21 %)
    description: str | None = None  # BT-154 item description
    allowance: Money | None = None  # BT-136 line allowance amount (BG-27)
    allowance_reason: str | None = None  # BT-139 line allowance reason
    period_start: date | None = None  # BT-134 invoice line period start date (BG-26)
    period_end: date | None = None  # BT-135 invoice line period end date
    note: str | None = None  # BT-127 invoice line note
    seller_item_id: str | None = None  # BT-155 item seller's identifier (the rated service)


@dataclass(frozen=True, slots=True)
class DocumentAllowance:
    """BG-20 document level allowance (a discount not tied to one line)."""

    amount: Money  # BT-92 document level allowance amount
    vat_category: VatCategory  # BT-95 document level allowance VAT category code
    vat_rate: Decimal  # BT-96 document level allowance VAT rate
    reason: str  # BT-97 document level allowance reason


@dataclass(frozen=True, slots=True)
class VatBreakdown:
    """BG-23 VAT breakdown: one per category and rate."""

    category: VatCategory  # BT-118 VAT category code
    rate: Decimal  # BT-119 VAT category rate, percent
    taxable_amount: Money  # BT-116 VAT category taxable amount
    tax_amount: Money  # BT-117 VAT category tax amount
    exemption_reason: str | None = None  # BT-120 VAT exemption reason text
    exemption_reason_code: str | None = None  # BT-121 VAT exemption reason code (VATEX)


@dataclass(frozen=True, slots=True)
class DocumentTotals:
    """BG-22 document totals."""

    line_net_total: Money  # BT-106 sum of invoice line net amount
    tax_exclusive: Money  # BT-109 invoice total amount without VAT
    tax_total: Money  # BT-110 invoice total VAT amount
    tax_inclusive: Money  # BT-112 invoice total amount with VAT
    payable: Money  # BT-115 amount due for payment
    allowance_total: Money | None = None  # BT-107 sum of allowances on document level
    prepaid: Money | None = None  # BT-113 paid amount
    rounding: Money | None = None  # BT-114 rounding amount


@dataclass(frozen=True, slots=True)
class PrecedingInvoice:
    """BG-3 preceding invoice reference: the invoice a credit note corrects."""

    number: str  # BT-25 preceding invoice reference
    issue_date: date | None = None  # BT-26 preceding invoice issue date


@dataclass(frozen=True, slots=True)
class UsageDetail:
    """One call/event of the call-by-call attachment (not an EN 16931 term).

    ``amount`` is the rated amount as rating produced it, unrounded: the rows of a
    line sum to that line's amount before the line is rounded once.
    """

    line_id: str  # the BT-126 of the line this usage is aggregated into
    started_at: datetime  # when the call/session started (in the account's zone)
    description: str  # destination / service, e.g. "+31 20 ... (Netherlands fixed)"
    quantity: Decimal  # used quantity, in unit_code
    unit_code: str  # UN/ECE rec 20, as BT-130
    amount: Decimal  # rated amount, document currency, unrounded


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """A finalised invoice or credit note, as printed and as exchanged (EN 16931 BG-0)."""

    kind: DocumentKind  # BT-3 invoice type code
    number: str  # BT-1 invoice number
    issue_date: date  # BT-2 invoice issue date
    currency: str  # BT-5 invoice currency code (ISO 4217)
    seller: Party  # BG-4 seller
    buyer: Party  # BG-7 buyer
    lines: tuple[InvoiceLine, ...]  # BG-25 invoice lines (at least one, BR-16)
    vat_breakdown: tuple[VatBreakdown, ...]  # BG-23 VAT breakdown
    totals: DocumentTotals  # BG-22 document totals
    due_date: date | None = None  # BT-9 payment due date
    period_start: date | None = None  # BT-73 invoicing period start date (BG-14)
    period_end: date | None = None  # BT-74 invoicing period end date
    payment_terms: str | None = None  # BT-20 payment terms
    payment_reference: str | None = None  # BT-83 remittance information
    payment: PaymentInstructions | None = None  # BG-16 payment instructions
    buyer_reference: str | None = None  # BT-10 buyer reference (the billing account id)
    preceding_invoices: tuple[PrecedingInvoice, ...] = ()  # BG-3 (credit notes)
    # BT-80 deliver to country code (BG-15): required with intra-community supply (BR-IC-12).
    deliver_to_country: str | None = None
    allowances: tuple[DocumentAllowance, ...] = ()  # BG-20 document level allowances
    notes: tuple[str, ...] = ()  # BT-22 invoice notes (BG-1)
    usage_details: tuple[UsageDetail, ...] = ()  # call-by-call attachment rows
    # Presentation only (INV-5): which template set and language print this document.
    language: str = "en"  # BCP-47 tag; printed in en, nl, es, ru or fr (English fallback)
    template_group: str | None = None  # reseller or customer group whose templates apply
    specification: str = field(default=EN16931_SPECIFICATION)  # BT-24 specification identifier

    @property
    def is_credit_note(self) -> bool:
        return self.kind is DocumentKind.CREDIT_NOTE

    def currencies(self) -> set[str]:
        """Every currency an amount of this document is in (renderers require just BT-5)."""
        amounts: list[Money | None] = [
            *(line.unit_price for line in self.lines),
            *(line.net_amount for line in self.lines),
            *(line.allowance for line in self.lines),
            *(b.taxable_amount for b in self.vat_breakdown),
            *(b.tax_amount for b in self.vat_breakdown),
            *(a.amount for a in self.allowances),
            *(getattr(self.totals, name) for name in self.totals.__slots__),
        ]
        return {self.currency} | {m.currency for m in amounts if m is not None}

    def details_of(self, line_id: str) -> tuple[UsageDetail, ...]:
        """The call-by-call rows aggregated into one line, in time order."""
        rows = [d for d in self.usage_details if d.line_id == line_id]
        return tuple(sorted(rows, key=lambda d: d.started_at))
