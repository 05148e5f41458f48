"""UN/CEFACT Cross Industry Invoice (CII D16B, EN 16931 binding) from an ``InvoiceDocument``.

The same XML is the standalone CII e-invoice and the ``factur-x.xml`` embedded in
a Factur-X PDF (profile EN 16931, guideline ``urn:cen.eu:en16931:2017``). Written
with lxml in the schema's element order, like ``ubl.py`` (ADR 0026 says why not
drafthorse). Amounts are printed as invoicing computed them.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TypeAlias

from lxml import etree

from services.common.money import Money
from services.invoicing.documents.model import (
    InvoiceDocument,
    InvoiceLine,
    Party,
    VatCategory,
)
from services.invoicing.documents.ubl import decimal_text

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"

_Element: TypeAlias = etree._Element


def _rsm(parent: _Element, tag: str) -> _Element:
    return etree.SubElement(parent, f"{{{RSM}}}{tag}")


def _ram(parent: _Element, tag: str, text: str | None = None, **attributes: str) -> _Element:
    element = etree.SubElement(parent, f"{{{RAM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def _amount(parent: _Element, tag: str, money: Money, with_currency: bool = False) -> _Element:
    # CII repeats the currency only on the tax total (BT-110); elsewhere BT-5 applies.
    if with_currency:
        return _ram(parent, tag, decimal_text(money.amount), currencyID=money.currency)
    return _ram(parent, tag, decimal_text(money.amount))


def _date(parent: _Element, tag: str, value: date, namespace: str = UDT) -> None:
    holder = _ram(parent, tag)
    element = etree.SubElement(holder, f"{{{namespace}}}DateTimeString", format="102")
    element.text = value.strftime("%Y%m%d")


def _indicator(parent: _Element, tag: str, value: bool) -> None:
    holder = _ram(parent, tag)
    etree.SubElement(holder, f"{{{UDT}}}Indicator").text = "true" if value else "false"


def to_cii(document: InvoiceDocument) -> _Element:
    root = etree.Element(
        f"{{{RSM}}}CrossIndustryInvoice", nsmap={"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
    )
    context = _rsm(root, "ExchangedDocumentContext")
    _ram(_ram(context, "GuidelineSpecifiedDocumentContextParameter"), "ID", document.specification)
    header = _rsm(root, "ExchangedDocument")
    _ram(header, "ID", document.number)  # BT-1
    _ram(header, "TypeCode", document.kind.value)  # BT-3
    _date(header, "IssueDateTime", document.issue_date)  # BT-2
    for note in document.notes:
        _ram(_ram(header, "IncludedNote"), "Content", note)  # BT-22
    transaction = _rsm(root, "SupplyChainTradeTransaction")
    for line in document.lines:
        _line(transaction, line)
    agreement = _ram(transaction, "ApplicableHeaderTradeAgreement")
    if document.buyer_reference:
        _ram(agreement, "BuyerReference", document.buyer_reference)  # BT-10
    _party(agreement, "SellerTradeParty", document.seller)
    _party(agreement, "BuyerTradeParty", document.buyer)
    delivery = _ram(transaction, "ApplicableHeaderTradeDelivery")
    if document.deliver_to_country:  # BG-15: where the supply goes
        ship_to = _ram(_ram(delivery, "ShipToTradeParty"), "PostalTradeAddress")
        _ram(ship_to, "CountryID", document.deliver_to_country)  # BT-80
    _settlement(transaction, document)
    return root


def to_cii_bytes(document: InvoiceDocument) -> bytes:
    return etree.tostring(to_cii(document), xml_declaration=True, encoding="UTF-8")


def _party(parent: _Element, tag: str, party: Party) -> None:
    element = _ram(parent, tag)
    if party.identifier:
        _ram(element, "ID", party.identifier)  # BT-29 / BT-46
    _ram(element, "Name", party.name)  # BT-27 / BT-44
    if party.legal_info:
        _ram(element, "Description", party.legal_info)  # BT-33
    if party.legal_registration_id or party.trading_name:
        legal = _ram(element, "SpecifiedLegalOrganization")
        if party.legal_registration_id:
            _ram(legal, "ID", party.legal_registration_id)  # BT-30 / BT-47
        if party.trading_name:
            _ram(legal, "TradingBusinessName", party.trading_name)  # BT-28 / BT-45
    if party.contact_name or party.contact_phone or party.contact_email:
        contact = _ram(element, "DefinedTradeContact")
        if party.contact_name:
            _ram(contact, "PersonName", party.contact_name)
        if party.contact_phone:
            _ram(
                _ram(contact, "TelephoneUniversalCommunication"),
                "CompleteNumber",
                party.contact_phone,
            )
        if party.contact_email:
            _ram(_ram(contact, "EmailURIUniversalCommunication"), "URIID", party.contact_email)
    address = _ram(element, "PostalTradeAddress")
    if party.address.post_code:
        _ram(address, "PostcodeCode", party.address.post_code)
    if party.address.line1:
        _ram(address, "LineOne", party.address.line1)
    if party.address.line2:
        _ram(address, "LineTwo", party.address.line2)
    if party.address.city:
        _ram(address, "CityName", party.address.city)
    _ram(address, "CountryID", party.address.country_code)
    if party.address.subdivision:
        _ram(address, "CountrySubDivisionName", party.address.subdivision)
    if party.electronic_address:
        uri = _ram(element, "URIUniversalCommunication")
        _ram(uri, "URIID", party.electronic_address, schemeID="EM")  # BT-34 / BT-49
    if party.vat_id:
        _ram(_ram(element, "SpecifiedTaxRegistration"), "ID", party.vat_id, schemeID="VA")


def _trade_tax(
    parent: _Element,
    tag: str,
    category: VatCategory,
    rate: Decimal,
    *,
    tax: Money | None = None,
    basis: Money | None = None,
    reason: str | None = None,
    reason_code: str | None = None,
) -> None:
    element = _ram(parent, tag)
    if tax is not None:
        _amount(element, "CalculatedAmount", tax)  # BT-117
    _ram(element, "TypeCode", "VAT")
    if reason:
        _ram(element, "ExemptionReason", reason)  # BT-120
    if basis is not None:
        _amount(element, "BasisAmount", basis)  # BT-116
    _ram(element, "CategoryCode", category.value)
    if reason_code:
        _ram(element, "ExemptionReasonCode", reason_code)  # BT-121
    if category is not VatCategory.NOT_SUBJECT:
        _ram(element, "RateApplicablePercent", decimal_text(rate))


def _period(parent: _Element, start: date | None, end: date | None) -> None:
    if start is None and end is None:
        return
    period = _ram(parent, "BillingSpecifiedPeriod")
    if start is not None:
        _date(period, "StartDateTime", start)
    if end is not None:
        _date(period, "EndDateTime", end)


def _line(transaction: _Element, line: InvoiceLine) -> None:
    item = _ram(transaction, "IncludedSupplyChainTradeLineItem")  # BG-25
    document_line = _ram(item, "AssociatedDocumentLineDocument")
    _ram(document_line, "LineID", line.line_id)  # BT-126
    if line.note:
        _ram(_ram(document_line, "IncludedNote"), "Content", line.note)  # BT-127
    product = _ram(item, "SpecifiedTradeProduct")
    if line.seller_item_id:
        _ram(product, "SellerAssignedID", line.seller_item_id)  # BT-155
    _ram(product, "Name", line.name)  # BT-153
    if line.description:
        _ram(product, "Description", line.description)  # BT-154
    agreement = _ram(item, "SpecifiedLineTradeAgreement")
    _amount(_ram(agreement, "NetPriceProductTradePrice"), "ChargeAmount", line.unit_price)
    delivery = _ram(item, "SpecifiedLineTradeDelivery")
    _ram(delivery, "BilledQuantity", decimal_text(line.quantity), unitCode=line.unit_code)
    settlement = _ram(item, "SpecifiedLineTradeSettlement")
    _trade_tax(settlement, "ApplicableTradeTax", line.vat_category, line.vat_rate)  # BG-30
    _period(settlement, line.period_start, line.period_end)  # BG-26
    if line.allowance is not None:  # BG-27
        allowance = _ram(settlement, "SpecifiedTradeAllowanceCharge")
        _indicator(allowance, "ChargeIndicator", False)
        _amount(allowance, "ActualAmount", line.allowance)  # BT-136
        _ram(allowance, "Reason", line.allowance_reason or "Discount")  # BT-139
    summation = _ram(settlement, "SpecifiedTradeSettlementLineMonetarySummation")
    _amount(summation, "LineTotalAmount", line.net_amount)  # BT-131


def _settlement(transaction: _Element, document: InvoiceDocument) -> None:
    settlement = _ram(transaction, "ApplicableHeaderTradeSettlement")
    payment = document.payment
    if payment is not None and payment.creditor_id:
        _ram(settlement, "CreditorReferenceID", payment.creditor_id)  # BT-90
    if document.payment_reference:
        _ram(settlement, "PaymentReference", document.payment_reference)  # BT-83
    _ram(settlement, "InvoiceCurrencyCode", document.currency)  # BT-5
    if payment is not None:  # BG-16
        means = _ram(settlement, "SpecifiedTradeSettlementPaymentMeans")
        _ram(means, "TypeCode", payment.means_code.value)  # BT-81
        if payment.means_text:
            _ram(means, "Information", payment.means_text)  # BT-82
        if payment.debited_account:
            _ram(_ram(means, "PayerPartyDebtorFinancialAccount"), "IBANID", payment.debited_account)
        if payment.iban:
            account = _ram(means, "PayeePartyCreditorFinancialAccount")
            _ram(account, "IBANID", payment.iban)  # BT-84
            if payment.account_name:
                _ram(account, "AccountName", payment.account_name)  # BT-85
        if payment.bic:
            institution = _ram(means, "PayeeSpecifiedCreditorFinancialInstitution")
            _ram(institution, "BICID", payment.bic)  # BT-86
    for breakdown in document.vat_breakdown:  # BG-23
        _trade_tax(
            settlement,
            "ApplicableTradeTax",
            breakdown.category,
            breakdown.rate,
            tax=breakdown.tax_amount,
            basis=breakdown.taxable_amount,
            reason=breakdown.exemption_reason,
            reason_code=breakdown.exemption_reason_code,
        )
    _period(settlement, document.period_start, document.period_end)  # BG-14
    for allowance in document.allowances:  # BG-20
        element = _ram(settlement, "SpecifiedTradeAllowanceCharge")
        _indicator(element, "ChargeIndicator", False)
        _amount(element, "ActualAmount", allowance.amount)  # BT-92
        _ram(element, "Reason", allowance.reason)  # BT-97
        _trade_tax(element, "CategoryTradeTax", allowance.vat_category, allowance.vat_rate)
    mandate = payment.mandate_reference if payment is not None else None
    if document.payment_terms or document.due_date or mandate:
        terms = _ram(settlement, "SpecifiedTradePaymentTerms")
        if document.payment_terms:
            _ram(terms, "Description", document.payment_terms)  # BT-20
        if document.due_date:
            _date(terms, "DueDateDateTime", document.due_date)  # BT-9
        if mandate:
            _ram(terms, "DirectDebitMandateID", mandate)  # BT-89
    totals = document.totals
    summation = _ram(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation")  # BG-22
    _amount(summation, "LineTotalAmount", totals.line_net_total)  # BT-106
    if totals.allowance_total is not None:
        _amount(summation, "AllowanceTotalAmount", totals.allowance_total)  # BT-107
    _amount(summation, "TaxBasisTotalAmount", totals.tax_exclusive)  # BT-109
    _amount(summation, "TaxTotalAmount", totals.tax_total, with_currency=True)  # BT-110
    if totals.rounding is not None:
        _amount(summation, "RoundingAmount", totals.rounding)  # BT-114
    _amount(summation, "GrandTotalAmount", totals.tax_inclusive)  # BT-112
    if totals.prepaid is not None:
        _amount(summation, "TotalPrepaidAmount", totals.prepaid)  # BT-113
    _amount(summation, "DuePayableAmount", totals.payable)  # BT-115
    for preceding in document.preceding_invoices:  # BG-3
        reference = _ram(settlement, "InvoiceReferencedDocument")
        _ram(reference, "IssuerAssignedID", preceding.number)  # BT-25
        if preceding.issue_date:
            _date(reference, "FormattedIssueDateTime", preceding.issue_date, QDT)  # BT-26
