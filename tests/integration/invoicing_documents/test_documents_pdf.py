"""The PDFs a customer receives: their text holds the number and totals, in the
customer's language, and the Factur-X PDF carries the CII as factur-x.xml."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from services.invoicing.documents.cii import to_cii_bytes
from services.invoicing.documents.example import sample_credit_note, sample_invoice
from services.invoicing.documents.render import DocumentFormat, render


def _xmp(reader: PdfReader) -> bytes:
    metadata = reader.xmp_metadata
    assert metadata is not None
    return bytes(metadata.stream.get_data())


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    # Normalise the no-break spaces Babel puts between amount and currency sign.
    return "\n".join(page.extract_text() for page in reader.pages).replace("\xa0", " ")


@pytest.mark.parametrize(
    ("language", "title", "due"),
    [("en", "INVOICE", "€64.37"), ("ru", "СЧЁТ", "64,37 €"), ("nl", "FACTUUR", "€ 64,37")],
)
def test_invoice_pdf_shows_number_totals_and_call_detail(language, title, due) -> None:
    rendered = render(sample_invoice(language=language), DocumentFormat.PDF)
    assert rendered.media_type == "application/pdf"
    assert rendered.filename == "INV-2026-000123.pdf"
    assert rendered.content.startswith(b"%PDF-")
    text = _text(rendered.content)
    assert "INV-2026-000123" in text
    assert title in text
    assert due in text  # amount due (BT-115)
    assert len(PdfReader(io.BytesIO(rendered.content)).pages) >= 2  # the call-detail page
    assert "+31 30 2000000" in text


def test_credit_note_pdf_shows_its_number_the_invoice_and_the_credit() -> None:
    text = _text(render(sample_credit_note(), DocumentFormat.PDF).content)
    assert "CN-2026-000007" in text
    assert "INV-2026-000123" in text
    assert "€2.65" in text


def test_pdf_is_pdf_a_3b() -> None:
    reader = PdfReader(io.BytesIO(render(sample_invoice(), DocumentFormat.PDF).content))
    xmp = _xmp(reader)
    assert b"<pdfaid:part>3</pdfaid:part>" in xmp or b'pdfaid:part="3"' in xmp
    assert b"pdfaid:conformance" in xmp


@pytest.mark.parametrize("document_factory", [sample_invoice, sample_credit_note])
def test_facturx_pdf_embeds_the_cii_as_factur_x_xml(document_factory) -> None:
    document = document_factory()
    rendered = render(document, DocumentFormat.FACTURX)
    reader = PdfReader(io.BytesIO(rendered.content))
    assert list(reader.attachments) == ["factur-x.xml"]
    [embedded] = reader.attachments["factur-x.xml"]
    assert embedded == to_cii_bytes(document)
    xmp = _xmp(reader)
    assert b"EN 16931" in xmp  # fx:ConformanceLevel
    assert document.number in _text(rendered.content)
