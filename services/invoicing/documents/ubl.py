"""UBL 2.1 Invoice and CreditNote (EN 16931 UBL syntax binding) from an ``InvoiceDocument``.

Written with lxml element by element in the XSD's order (the schema is a
sequence: an element out of place is invalid). Amounts are printed exactly as
invoicing computed them; nothing is recomputed here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TypeAlias

from lxml import etree

from services.common.money import Money
from services.invoicing.documents.model import (
    DocumentAllowance,
    InvoiceDocument,
    InvoiceLine,
    Party,
    PaymentInstructions,
    VatCategory,
)

INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"

_Element: TypeAlias = etree._Element


def _cac(parent: _Element, name: str) -> _Element:
    return etree.SubElement(parent, f"{{{CAC}}}{name}")


def _cbc(parent: _Element, tag: str, text: str, **attributes: str) -> _Element:
    element = etree.SubElement(parent, f"{{{CBC}}}{tag}", attributes)
    element.text = text
    return element


def decimal_text(value: Decimal) -> str:
    """Plain positional notation: ``1E+2`` is not an xs:decimal."""
    return format(value, "f")


def _amount(parent: _Element, name: str, money: Money) -> _Element:
    return _cbc(parent, name, decimal_text(money.amount), currencyID=money.currency)


def _date(value: date) -> str:
    return value.isoformat()


def to_ubl(document: InvoiceDocument) -> _Element:
    """The UBL tree: ``Invoice`` for invoices, ``CreditNote`` for credit notes."""
    credit = document.is_credit_note
    root_ns = CREDIT_NOTE_NS if credit else INVOICE_NS
    root_name = "CreditNote" if credit else "Invoice"
    root = etree.Element(f"{{{root_ns}}}{root_name}", nsmap={None: root_ns, "cac": CAC, "cbc": CBC})
    _cbc(root, "CustomizationID", document.specification)  # BT-24
    _cbc(root, "ID", document.number)  # BT-1
    _cbc(root, "IssueDate", _date(document.issue_date))  # BT-2
    if not credit and document.due_date is not None:
        _cbc(root, "DueDate", _date(document.due_date))  # BT-9 (Invoice)
    _cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", document.kind.value)
    for note in document.notes:
        _cbc(root, "Note", note)  # BT-22
    _cbc(root, "DocumentCurrencyCode", document.currency)  # BT-5
    if document.buyer_reference:
        _cbc(root, "BuyerReference", document.buyer_reference)  # BT-10
    if document.period_start or document.period_end:
        period = _cac(root, "InvoicePeriod")  # BG-14
        if document.period_start:
            _cbc(period, "StartDate", _date(document.period_start))
        if document.period_end:
            _cbc(period, "EndDate", _date(document.period_end))
    for preceding in document.preceding_invoices:  # BG-3
        reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(reference, "ID", preceding.number)
        if preceding.issue_date:
            _cbc(reference, "IssueDate", _date(preceding.issue_date))
    _party(_cac(root, "AccountingSupplierParty"), document.seller, document.payment)
    _party(_cac(root, "AccountingCustomerParty"), document.buyer, None)
    if document.deliver_to_country:  # BG-13 / BG-15: where the supply goes
        address = _cac(_cac(_cac(root, "Delivery"), "DeliveryLocation"), "Address")
        _cbc(_cac(address, "Country"), "IdentificationCode", document.deliver_to_country)  # BT-80
    if document.payment is not None:
        _payment_means(root, document, document.payment)
    if document.payment_terms:
        _cbc(_cac(root, "PaymentTerms"), "Note", document.payment_terms)  # BT-20
    for allowance in document.allowances:
        _document_allowance(root, allowance)
    _tax_total(root, document)
    _monetary_total(root, document)
    for line in document.lines:
        _line(root, line, credit)
    return root


def to_ubl_bytes(document: InvoiceDocument) -> bytes:
    return etree.tostring(to_ubl(document), xml_declaration=True, encoding="UTF-8")


def _party(holder: _Element, party: Party, payment: PaymentInstructions | None) -> None:
    element = _cac(holder, "Party")
    if party.electronic_address:  # BT-34 / BT-49, an e-mail address (EAS code EM)
        _cbc(element, "EndpointID", party.electronic_address, schemeID="EM")
    if party.identifier:  # BT-29 / BT-46
        _cbc(_cac(element, "PartyIdentification"), "ID", party.identifier)
    if payment is not None and payment.creditor_id:  # BT-90 lives on the seller in UBL
        _cbc(_cac(element, "PartyIdentification"), "ID", payment.creditor_id, schemeID="SEPA")
    if party.trading_name:  # BT-28 / BT-45
        _cbc(_cac(element, "PartyName"), "Name", party.trading_name)
    address = _cac(element, "PostalAddress")  # BG-5 / BG-8
    if party.address.line1:
        _cbc(address, "StreetName", party.address.line1)
    if party.address.line2:
        _cbc(address, "AdditionalStreetName", party.address.line2)
    if party.address.city:
        _cbc(address, "CityName", party.address.city)
    if party.address.post_code:
        _cbc(address, "PostalZone", party.address.post_code)
    if party.address.subdivision:
        _cbc(address, "CountrySubentity", party.address.subdivision)
    _cbc(_cac(address, "Country"), "IdentificationCode", party.address.country_code)
    if party.vat_id:  # BT-31 / BT-48
        tax_scheme = _cac(element, "PartyTaxScheme")
        _cbc(tax_scheme, "CompanyID", party.vat_id)
        _cbc(_cac(tax_scheme, "TaxScheme"), "ID", "VAT")
    legal = _cac(element, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", party.name)  # BT-27 / BT-44
    if party.legal_registration_id:  # BT-30 / BT-47
        _cbc(legal, "CompanyID", party.legal_registration_id)
    if party.legal_info:  # BT-33
        _cbc(legal, "CompanyLegalForm", party.legal_info)
    if party.contact_name or party.contact_phone or party.contact_email:  # BG-6 / BG-9
        contact = _cac(element, "Contact")
        if party.contact_name:
            _cbc(contact, "Name", party.contact_name)
        if party.contact_phone:
            _cbc(contact, "Telephone", party.contact_phone)
        if party.contact_email:
            _cbc(contact, "ElectronicMail", party.contact_email)


def _payment_means(root: _Element, document: InvoiceDocument, payment: PaymentInstructions) -> None:
    means = _cac(root, "PaymentMeans")  # BG-16
    if payment.means_text:
        _cbc(means, "PaymentMeansCode", payment.means_code.value, name=payment.means_text)
    else:
        _cbc(means, "PaymentMeansCode", payment.means_code.value)  # BT-81
    if document.is_credit_note and document.due_date is not None:
        _cbc(means, "PaymentDueDate", _date(document.due_date))  # BT-9 (CreditNote)
    if document.payment_reference:
        _cbc(means, "PaymentID", document.payment_reference)  # BT-83
    if payment.iban:  # BG-17
        account = _cac(means, "PayeeFinancialAccount")
        _cbc(account, "ID", payment.iban)
        if payment.account_name:
            _cbc(account, "Name", payment.account_name)
        if payment.bic:
            _cbc(_cac(account, "FinancialInstitutionBranch"), "ID", payment.bic)
    if payment.mandate_reference:  # BG-19
        mandate = _cac(means, "PaymentMandate")
        _cbc(mandate, "ID", payment.mandate_reference)
        if payment.debited_account:
            _cbc(_cac(mandate, "PayerFinancialAccount"), "ID", payment.debited_account)


def _tax_category(
    parent: _Element,
    name: str,
    category: VatCategory,
    rate: Decimal,
    reason: str | None = None,
    reason_code: str | None = None,
) -> None:
    element = _cac(parent, name)
    _cbc(element, "ID", category.value)
    if category is not VatCategory.NOT_SUBJECT:  # BR-O-05: "not subject" carries no rate
        _cbc(element, "Percent", decimal_text(rate))
    if reason_code:
        _cbc(element, "TaxExemptionReasonCode", reason_code)  # BT-121
    if reason:
        _cbc(element, "TaxExemptionReason", reason)  # BT-120
    _cbc(_cac(element, "TaxScheme"), "ID", "VAT")


def _document_allowance(root: _Element, allowance: DocumentAllowance) -> None:
    element = _cac(root, "AllowanceCharge")  # BG-20
    _cbc(element, "ChargeIndicator", "false")
    _cbc(element, "AllowanceChargeReason", allowance.reason)  # BT-97
    _amount(element, "Amount", allowance.amount)  # BT-92
    _tax_category(element, "TaxCategory", allowance.vat_category, allowance.vat_rate)


def _tax_total(root: _Element, document: InvoiceDocument) -> None:
    tax_total = _cac(root, "TaxTotal")
    _amount(tax_total, "TaxAmount", document.totals.tax_total)  # BT-110
    for breakdown in document.vat_breakdown:  # BG-23
        subtotal = _cac(tax_total, "TaxSubtotal")
        _amount(subtotal, "TaxableAmount", breakdown.taxable_amount)  # BT-116
        _amount(subtotal, "TaxAmount", breakdown.tax_amount)  # BT-117
        _tax_category(
            subtotal,
            "TaxCategory",
            breakdown.category,
            breakdown.rate,
            breakdown.exemption_reason,
            breakdown.exemption_reason_code,
        )


def _monetary_total(root: _Element, document: InvoiceDocument) -> None:
    totals = document.totals
    element = _cac(root, "LegalMonetaryTotal")  # BG-22
    _amount(element, "LineExtensionAmount", totals.line_net_total)  # BT-106
    _amount(element, "TaxExclusiveAmount", totals.tax_exclusive)  # BT-109
    _amount(element, "TaxInclusiveAmount", totals.tax_inclusive)  # BT-112
    if totals.allowance_total is not None:
        _amount(element, "AllowanceTotalAmount", totals.allowance_total)  # BT-107
    if totals.prepaid is not None:
        _amount(element, "PrepaidAmount", totals.prepaid)  # BT-113
    if totals.rounding is not None:
        _amount(element, "PayableRoundingAmount", totals.rounding)  # BT-114
    _amount(element, "PayableAmount", totals.payable)  # BT-115


def _line(root: _Element, line: InvoiceLine, credit: bool) -> None:
    element = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")  # BG-25
    _cbc(element, "ID", line.line_id)  # BT-126
    if line.note:
        _cbc(element, "Note", line.note)  # BT-127
    quantity_name = "CreditedQuantity" if credit else "InvoicedQuantity"
    _cbc(element, quantity_name, decimal_text(line.quantity), unitCode=line.unit_code)
    _amount(element, "LineExtensionAmount", line.net_amount)  # BT-131
    if line.period_start or line.period_end:  # BG-26
        period = _cac(element, "InvoicePeriod")
        if line.period_start:
            _cbc(period, "StartDate", _date(line.period_start))
        if line.period_end:
            _cbc(period, "EndDate", _date(line.period_end))
    if line.allowance is not None:  # BG-27
        allowance = _cac(element, "AllowanceCharge")
        _cbc(allowance, "ChargeIndicator", "false")
        _cbc(allowance, "AllowanceChargeReason", line.allowance_reason or "Discount")
        _amount(allowance, "Amount", line.allowance)  # BT-136
    item = _cac(element, "Item")  # BG-31
    if line.description:
        _cbc(item, "Description", line.description)  # BT-154
    _cbc(item, "Name", line.name)  # BT-153
    if line.seller_item_id:
        _cbc(_cac(item, "SellersItemIdentification"), "ID", line.seller_item_id)  # BT-155
    _tax_category(item, "ClassifiedTaxCategory", line.vat_category, line.vat_rate)  # BG-30
    price = _cac(element, "Price")  # BG-29
    _amount(price, "PriceAmount", line.unit_price)  # BT-146
