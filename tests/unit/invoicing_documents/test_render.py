"""The one entry point: names, media types, and refusal of a document it cannot express."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.common.money import Money
from services.invoicing.documents.example import sample_credit_note, sample_invoice
from services.invoicing.documents.render import DocumentFormat, MixedCurrencies, render


@pytest.mark.parametrize(
    ("document_format", "media_type", "filename"),
    [
        (DocumentFormat.HTML, "text/html; charset=utf-8", "CN-2026-000007.html"),
        (DocumentFormat.UBL, "application/xml", "CN-2026-000007.ubl.xml"),
        (DocumentFormat.CII, "application/xml", "CN-2026-000007.cii.xml"),
    ],
)
def test_rendered_documents_are_named_and_typed(document_format, media_type, filename) -> None:
    rendered = render(sample_credit_note(), document_format)
    assert rendered.media_type == media_type
    assert rendered.filename == filename
    assert b"CN-2026-000007" in rendered.content


def test_a_number_with_a_slash_makes_one_file_name() -> None:
    document = replace(sample_invoice(), number="2026/000123")
    assert render(document, DocumentFormat.UBL).filename == "2026-000123.ubl.xml"


def test_an_amount_in_another_currency_is_refused() -> None:
    document = sample_invoice()
    line = replace(document.lines[0], net_amount=Money.of("22.50", "USD"))
    with pytest.raises(MixedCurrencies, match="EUR"):
        render(replace(document, lines=(line, *document.lines[1:])), DocumentFormat.UBL)
