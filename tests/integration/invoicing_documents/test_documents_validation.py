"""Every e-invoice kind passes the official XSDs and the EN 16931 Schematron with zero
errors, and a tampered total is caught by the rules (not by our own arithmetic)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import pytest

from services.common.money import Money
from services.invoicing.documents.__main__ import embedded_xml, main
from services.invoicing.documents.example import (
    sample_credit_note,
    sample_intra_community_invoice,
    sample_invoice,
    sample_not_subject_receipt,
    sample_reverse_charge_invoice,
)
from services.invoicing.documents.model import InvoiceDocument
from services.invoicing.documents.render import DocumentFormat, render
from services.invoicing.documents.validation import SchematronWorker, Syntax, validate

DOCUMENTS: dict[str, Callable[[], InvoiceDocument]] = {
    "invoice": sample_invoice,
    "credit-note": sample_credit_note,
    "reverse-charge-invoice": sample_reverse_charge_invoice,
    "intra-community-invoice": sample_intra_community_invoice,
    "not-subject-receipt": sample_not_subject_receipt,
}
EXPECTED_SYNTAX = {
    ("invoice", DocumentFormat.UBL): Syntax.UBL_INVOICE,
    ("reverse-charge-invoice", DocumentFormat.UBL): Syntax.UBL_INVOICE,
    ("intra-community-invoice", DocumentFormat.UBL): Syntax.UBL_INVOICE,
    ("not-subject-receipt", DocumentFormat.UBL): Syntax.UBL_INVOICE,
    ("credit-note", DocumentFormat.UBL): Syntax.UBL_CREDIT_NOTE,
}


def _xml(document: InvoiceDocument, document_format: DocumentFormat) -> bytes:
    rendered = render(document, document_format)
    if document_format is DocumentFormat.FACTURX:
        return embedded_xml(rendered.content)
    return rendered.content


@pytest.mark.parametrize(
    "document_format", [DocumentFormat.UBL, DocumentFormat.CII, DocumentFormat.FACTURX]
)
@pytest.mark.parametrize("kind", list(DOCUMENTS))
def test_every_e_invoice_kind_is_valid_en16931(
    schematron: SchematronWorker, kind: str, document_format: DocumentFormat
) -> None:
    report = validate(_xml(DOCUMENTS[kind](), document_format), schematron)
    assert report.syntax == EXPECTED_SYNTAX.get((kind, document_format), Syntax.CII)
    assert report.errors == (), report.summary()
    assert not [f for f in report.findings if f.source == "xsd"]


def _tampered_total(document: InvoiceDocument) -> InvoiceDocument:
    totals = document.totals
    one_cent_more = Money(totals.tax_inclusive.amount + Decimal("0.01"), document.currency)
    return replace(document, totals=replace(totals, tax_inclusive=one_cent_more))


@pytest.mark.parametrize("document_format", [DocumentFormat.UBL, DocumentFormat.CII])
@pytest.mark.parametrize("kind", ["invoice", "credit-note"])
def test_a_tampered_total_is_caught_by_the_en16931_rules(
    schematron: SchematronWorker, kind: str, document_format: DocumentFormat
) -> None:
    report = validate(_xml(_tampered_total(DOCUMENTS[kind]()), document_format), schematron)
    assert not report.ok
    # BT-112 no longer equals BT-109 + BT-110, nor BT-115 equals BT-112 - BT-113.
    assert {"BR-CO-15", "BR-CO-16"} <= report.rules(), report.summary()


def test_a_wrong_vat_amount_is_caught(schematron: SchematronWorker) -> None:
    document = sample_invoice()
    first, *rest = document.vat_breakdown
    wrong = replace(first, tax_amount=Money(first.tax_amount.amount + 1, "EUR"))
    report = validate(
        _xml(replace(document, vat_breakdown=(wrong, *rest)), DocumentFormat.UBL), schematron
    )
    assert "BR-CO-17" in report.rules(), report.summary()  # tax = taxable x rate, rounded


def test_a_schema_violation_is_reported_before_the_rules(schematron: SchematronWorker) -> None:
    xml = render(sample_invoice(), DocumentFormat.UBL).content.replace(
        b"<cbc:IssueDate>2026-12-01</cbc:IssueDate>", b"<cbc:IssueDate>1 Dec 2026</cbc:IssueDate>"
    )
    report = validate(xml, schematron)
    assert not report.ok
    assert {f.source for f in report.errors} == {"xsd"}


def test_operator_command_validates_files_and_fails_on_a_tampered_one(tmp_path, capsys) -> None:
    good = tmp_path / "good.ubl.xml"
    good.write_bytes(render(sample_invoice(), DocumentFormat.UBL).content)
    facturx = tmp_path / "good.facturx.pdf"
    facturx.write_bytes(render(sample_credit_note(), DocumentFormat.FACTURX).content)
    assert main(["validate", str(good), str(facturx)]) == 0
    bad = tmp_path / "bad.cii.xml"
    bad.write_bytes(render(_tampered_total(sample_invoice()), DocumentFormat.CII).content)
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.cii.xml: cii: " in out
    assert "BR-CO-15" in out


@pytest.mark.parametrize("document_format", [DocumentFormat.UBL, DocumentFormat.CII])
def test_intra_community_supply_without_its_deliver_to_country_is_caught(
    schematron: SchematronWorker, document_format: DocumentFormat
) -> None:
    document = replace(sample_intra_community_invoice(), deliver_to_country=None)
    report = validate(_xml(document, document_format), schematron)
    assert "BR-IC-12" in report.rules(), report.summary()
